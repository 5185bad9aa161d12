"""The backends one console session uses, behind one small injectable interface.

Screens call these methods from worker threads only. ``RealBackends`` imports mlflow, docker
and the metrics clients lazily (mlflow alone takes ~2 s to import), so the first paint never
waits for them; tests pass a fake with the same methods.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from backends.errors import BackendError, Unavailable

if TYPE_CHECKING:
    from backends.records import (
        AliasEvent,
        Deployment,
        GateResult,
        ModelVersion,
        MonitorSnapshot,
        RegisteredModel,
        RunComparison,
        RunDetail,
        RunListing,
    )
    from console.config import Settings

BackendName = Literal["mlflow", "docker", "metrics"]
BACKENDS: tuple[BackendName, ...] = ("mlflow", "docker", "metrics")


@dataclass(frozen=True)
class TrainingOutcome:
    """How a training ended: its run (None if MLflow never created one), status and exit code."""

    run_id: str | None
    status: str | None
    exit_code: int
    log_path: str


def default_project() -> Path:
    """``examples/iris`` in the working directory, else the one beside this package."""
    here = Path("examples/iris")
    if (here / "MLproject").is_file():
        return here
    return Path(__file__).resolve().parents[1] / "examples" / "iris"


class Backends(Protocol):
    """Everything the console asks of the outside world."""

    def probe(self, backend: BackendName) -> None:
        """Return if ``backend`` answers; raise a BackendError if it does not."""

    def list_runs(self, experiment: str, filter_string: str, order_by: list[str]) -> RunListing:
        """A page of runs of ``experiment``."""

    def show_run(self, run_id: str) -> RunDetail:
        """One run's details."""

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        """Runs side by side."""

    def train(
        self, project: str, params: dict[str, str], on_line: Callable[[str], object]
    ) -> TrainingOutcome:
        """Run an MLflow Project to the end, each output line to ``on_line``."""

    def register(self, run_id: str, name: str) -> ModelVersion:
        """Register the model a run logged as a new version of ``name``."""

    def list_models(self) -> list[RegisteredModel]:
        """Registered models."""

    def versions(self, model: str) -> list[ModelVersion]:
        """Versions of one model, newest first."""

    def history(self, model: str) -> list[AliasEvent]:
        """Every alias move of one model."""

    def promote(self, model: str, version: int, alias: str) -> tuple[GateResult, AliasEvent | None]:
        """Gate and move ``alias`` to ``version``."""

    def rollback(self, model: str, alias: str) -> AliasEvent | None:
        """Move ``alias`` back one step."""

    def list_deployments(self) -> list[Deployment]:
        """The live map of deployments."""

    def deployment_logs(self, name: str, tail: int) -> Iterator[str]:
        """A deployment's log lines, following."""

    def rollback_target(self, name: str) -> str:
        """The version a deployment rollback would go back to."""

    def rollback_deployment(self, name: str) -> Deployment:
        """Serve the previously deployed version again."""

    def remove_deployment(self, name: str) -> list[str]:
        """Take a deployment down; the removed container names."""

    def monitor(self) -> MonitorSnapshot:
        """Rate, errors, latency and drift of every deployment."""


class RealBackends:
    """The real MLflow, Docker and metrics backends named by ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._registry: Any = None
        self._docker: Any = None
        self._metrics: Any = None
        self._metrics_targets: tuple[Any, ...] | None = None

    # ------------------------------------------------------------------ connections

    def registry(self) -> Any:
        from backends.registry import Registry

        with self._lock:
            if self._registry is None:
                self._registry = Registry(self.settings.tracking_uri)
            return self._registry

    def docker(self) -> Any:
        from backends import docker_engine

        with self._lock:
            if self._docker is None:
                self._docker = docker_engine.connect(self.settings.docker_host, timeout=5)
            return self._docker

    def probe(self, backend: BackendName) -> None:
        if backend == "mlflow":
            self._probe_tracking()
        elif backend == "docker":
            try:
                self.docker().ping()
            except BackendError:
                raise
            except Exception as exc:
                self._docker = None  # reconnect on the next probe
                raise Unavailable(f"Docker engine did not answer: {exc}") from exc
        elif self.settings.prometheus_url:
            import httpx

            url = self.settings.prometheus_url.rstrip("/") + "/-/ready"
            try:
                httpx.get(url, timeout=3).raise_for_status()
            except httpx.HTTPError as exc:
                raise Unavailable(f"Prometheus at {url} did not answer: {exc}") from exc

    def _probe_tracking(self) -> None:
        uri = self.settings.tracking_uri
        if uri.startswith(("http://", "https://")):
            import httpx

            try:
                httpx.get(uri.rstrip("/") + "/health", timeout=3).raise_for_status()
            except httpx.HTTPError as exc:
                raise Unavailable(f"MLflow at {uri} did not answer: {exc}") from exc
        else:
            self.registry().list_models()

    # ------------------------------------------------------------------ runs

    def list_runs(self, experiment: str, filter_string: str, order_by: list[str]) -> RunListing:
        from backends import tracking

        return tracking.list_runs(
            self.settings.tracking_uri,
            experiment,
            filter_string=filter_string,
            order_by=order_by,
            max_results=500,
        )

    def show_run(self, run_id: str) -> RunDetail:
        from backends import tracking

        return tracking.show_run(self.settings.tracking_uri, run_id)

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        from backends import tracking

        return tracking.compare_runs(self.settings.tracking_uri, run_ids)

    def train(
        self, project: str, params: dict[str, str], on_line: Callable[[str], object]
    ) -> TrainingOutcome:
        from backends.training import Training

        job = Training(Path(project), self.settings.tracking_uri, params=params)
        job.start()
        try:
            for line in job.lines():
                on_line(line)
        finally:
            code = job.wait(timeout=60)
            status = job.finish(code)
        return TrainingOutcome(job.run_id, status, code, str(job.log_path))

    def register(self, run_id: str, name: str) -> ModelVersion:
        from backends.training import register_model

        return register_model(self.settings.tracking_uri, run_id, name)

    # ------------------------------------------------------------------ registry

    def list_models(self) -> list[RegisteredModel]:
        return self.registry().list_models()  # type: ignore[no-any-return]

    def versions(self, model: str) -> list[ModelVersion]:
        return self.registry().versions(model)  # type: ignore[no-any-return]

    def history(self, model: str) -> list[AliasEvent]:
        return self.registry().history(model)  # type: ignore[no-any-return]

    def promote(self, model: str, version: int, alias: str) -> tuple[GateResult, AliasEvent | None]:
        return self.registry().promote(model, version, alias=alias, reason="console")  # type: ignore[no-any-return]

    def rollback(self, model: str, alias: str) -> AliasEvent | None:
        return self.registry().rollback(model, alias=alias, reason="console")  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ deployments

    def list_deployments(self) -> list[Deployment]:
        from backends import containers

        return containers.list_deployments(self.docker())

    def deployment_logs(self, name: str, tail: int) -> Iterator[str]:
        from backends import containers

        return containers.deployment_logs(self.docker(), name, follow=True, tail=tail)

    def rollback_target(self, name: str) -> str:
        from backends import containers

        return containers.rollback_target(self.docker(), name)

    def rollback_deployment(self, name: str) -> Deployment:
        from backends import containers, deploy_history, images
        from backends.errors import NotFound

        client = self.docker()
        current = containers.get_deployment(client, name)
        target = containers.rollback_target(client, name)
        image = images.find_image(client, current.model, target)
        if image is None:
            raise NotFound(
                f"no serving image of {current.model} version {target}: "
                f"build it with `mlops image build {current.model}/{target}`"
            )
        deployment, replaced = containers.deploy(
            client,
            image,
            name,
            port=current.port or 8080,
            host=current.host,
            alias="",
            tracking_uri=self.settings.tracking_uri,
        )
        deploy_history.record(self.settings.tracking_uri, deployment, "rollback", replaced, "")
        return deployment

    def remove_deployment(self, name: str) -> list[str]:
        from backends import containers

        return containers.remove_deployment(self.docker(), name)

    # ------------------------------------------------------------------ monitoring

    def monitor(self) -> MonitorSnapshot:
        if self.settings.prometheus_url:
            if self._metrics is None:
                from backends.metrics import PrometheusSource

                self._metrics = PrometheusSource(self.settings.prometheus_url, window="1m")
            return self._metrics.snapshot()  # type: ignore[no-any-return]
        from backends.discovery import scrape_targets
        from backends.metrics import ScrapeSource

        targets = tuple(scrape_targets(self.list_deployments()))
        if self._metrics is None or targets != self._metrics_targets:
            if self._metrics is not None:
                self._metrics.close()
            self._metrics = ScrapeSource(targets, interval=1.0)
            self._metrics_targets = targets
        return self._metrics.snapshot()  # type: ignore[no-any-return]
