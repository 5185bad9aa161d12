"""The backends one console session uses, behind one small injectable interface.

Screens call these methods from worker threads only. ``RealBackends`` imports mlflow, docker
and the metrics clients lazily (mlflow alone takes ~2 s to import), so the first paint never
waits for them; tests pass a fake with the same methods.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from backends.errors import BackendError, Unavailable

if TYPE_CHECKING:
    from backends.deploy_ops import (
        BuildOutcome,
        DeployOutcome,
        DeployPlan,
        RollbackOutcome,
        RollbackPlan,
    )
    from backends.records import (
        AliasEvent,
        Deployment,
        DriftThresholds,
        Experiment,
        GateResult,
        ModelVersion,
        MonitorHistory,
        MonitorSnapshot,
        ProjectParameter,
        RegisteredModel,
        RetrainOutcome,
        RunComparison,
        RunDetail,
        RunListing,
    )
    from console.config import Settings

BackendName = Literal["mlflow", "docker", "metrics"]
BACKENDS: tuple[BackendName, ...] = ("mlflow", "docker", "metrics")
RUNS_PAGE = 200  # runs per page: a screenful many times over, and 50 pages make 10,000


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

    def list_experiments(self) -> list[Experiment]:
        """Active experiments, most recently updated first."""

    def list_runs(
        self,
        experiment: str,
        filter_string: str,
        order_by: list[str],
        offset: int = 0,
        quick: bool = False,
    ) -> RunListing:
        """A page of runs of ``experiment``; ``offset`` > 0 pages the first page's snapshot.

        Answers at once: when the local index needs a slow full sync (or, with ``quick``, any
        sync) the listing says ``index_pending`` and the caller runs ``sync_runs`` in the
        background, then lists again.
        """

    def sync_runs(self, experiment: str) -> None:
        """Bring the local run index of ``experiment`` fully up to date (seconds at 10k runs)."""

    def show_run(self, run_id: str) -> RunDetail:
        """One run's details."""

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        """Runs side by side."""

    def project_parameters(self, project: str) -> list[ProjectParameter]:
        """The parameters of a project's main entry point, from its MLproject file."""

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

    def plan_rollback(self, name: str) -> RollbackPlan:
        """What a deployment rollback would change (from → to, a build first or not)."""

    def rollback_deployment(
        self, name: str, to: str | None, on_log: Callable[[str], None]
    ) -> RollbackOutcome:
        """Serve the previously deployed version (or ``to``) again, as `mlops deploy rollback`."""

    def build_image(self, reference: str, on_log: Callable[[str], None]) -> BuildOutcome:
        """Build the serving image of a version, as `mlops image build`."""

    def plan_deploy(
        self, reference: str, name: str | None, port: int, host: str, follow_alias: bool
    ) -> DeployPlan:
        """What deploying ``reference`` as ``name`` would change; nothing changes yet."""

    def deploy(self, plan: DeployPlan, on_log: Callable[[str], None]) -> DeployOutcome:
        """Run a deploy plan, as `mlops deploy up`."""

    def remove_deployment(self, name: str) -> list[str]:
        """Take a deployment down; the removed container names."""

    def monitor(self) -> MonitorSnapshot:
        """Rate, errors, latency and drift of every deployment."""

    def monitor_history(
        self, deployment: str, minutes: float, instance: str = ""
    ) -> MonitorHistory:
        """One deployment's (or a target's, by host:port) figures over the last ``minutes``."""

    def drift_thresholds(self, model: str, version: str) -> DriftThresholds:
        """The drift thresholds of a model version (its drift reference, else the defaults)."""

    def retrain(
        self, deployment: str, data: str, on_line: Callable[[str], object]
    ) -> RetrainOutcome:
        """Train, register and gate a challenger for a deployment's model; champion stays."""


class RealBackends:
    """The real MLflow, Docker and metrics backends named by ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._monitor_lock = threading.Lock()
        self._registry: Any = None
        self._docker: Any = None
        self._metrics: Any = None
        self._metrics_targets: tuple[Any, ...] | None = None
        self._recorder: Any = None  # the direct scrape's past, for plots (no Prometheus)

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

    def list_experiments(self) -> list[Experiment]:
        from backends import tracking

        return tracking.list_experiments(self.settings.tracking_uri)

    def list_runs(
        self,
        experiment: str,
        filter_string: str,
        order_by: list[str],
        offset: int = 0,
        quick: bool = False,
    ) -> RunListing:
        from backends import tracking

        return tracking.list_runs(
            self.settings.tracking_uri,
            experiment,
            filter_string=filter_string,
            order_by=order_by,
            max_results=RUNS_PAGE,
            offset=offset,
            # A 10,000-run full sync takes seconds: sync_runs does it in the background. A later
            # page comes from the snapshot the first page saw.
            sync=("later" if quick else "defer") if offset == 0 else "none",
        )

    def sync_runs(self, experiment: str) -> None:
        from backends import tracking

        tracking.sync_runs(self.settings.tracking_uri, experiment)

    def show_run(self, run_id: str) -> RunDetail:
        from backends import tracking

        return tracking.show_run(self.settings.tracking_uri, run_id)

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        from backends import tracking

        return tracking.compare_runs(self.settings.tracking_uri, run_ids)

    def project_parameters(self, project: str) -> list[ProjectParameter]:
        from backends.training import project_parameters

        return project_parameters(Path(project))

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

    def plan_rollback(self, name: str) -> RollbackPlan:
        from backends import deploy_ops

        return deploy_ops.plan_rollback(self.docker(), self.settings.tracking_uri, name)

    def rollback_deployment(
        self, name: str, to: str | None, on_log: Callable[[str], None]
    ) -> RollbackOutcome:
        from backends import deploy_ops

        with self._engine_for_changes() as client:
            return deploy_ops.rollback(
                client, self.settings.tracking_uri, name, to=to, reason="console", on_log=on_log
            )

    def build_image(self, reference: str, on_log: Callable[[str], None]) -> BuildOutcome:
        from backends import deploy_ops

        with self._engine_for_changes() as client:
            return deploy_ops.build(client, self.settings.tracking_uri, reference, on_log=on_log)

    def plan_deploy(
        self, reference: str, name: str | None, port: int, host: str, follow_alias: bool
    ) -> DeployPlan:
        from backends import deploy_ops

        return deploy_ops.plan_deploy(
            self.docker(),
            self.settings.tracking_uri,
            reference,
            name=name,
            port=port,
            host=host,
            follow_alias=follow_alias,
        )

    def deploy(self, plan: DeployPlan, on_log: Callable[[str], None]) -> DeployOutcome:
        from backends import deploy_ops

        with self._engine_for_changes() as client:
            return deploy_ops.deploy(
                client, self.settings.tracking_uri, plan, reason="console", on_log=on_log
            )

    @contextmanager
    def _engine_for_changes(self) -> Iterator[Any]:
        """A client with the CLI's timeout: the shared one gives up after 5 s, and a build step
        or a drain can stay silent longer than that."""
        from backends import docker_engine

        client = docker_engine.connect(self.settings.docker_host)
        try:
            yield client
        finally:
            client.close()

    def remove_deployment(self, name: str) -> list[str]:
        from backends import deploy_ops

        removed, _warning = deploy_ops.take_down(self.docker(), name)  # targets: best effort
        return removed

    # ------------------------------------------------------------------ monitoring

    def monitor(self) -> MonitorSnapshot:
        if self.settings.prometheus_url:
            return self._prometheus().snapshot()  # type: ignore[no-any-return]
        from backends.discovery import scrape_targets
        from backends.metrics import ScrapeSource

        targets = tuple(scrape_targets(self.list_deployments()))
        # One sample at a time: a refresh asked for while one runs must not close the source
        # under it (a cancelled thread worker keeps running).
        with self._monitor_lock:
            if self._metrics is None or targets != self._metrics_targets:
                if self._metrics is not None:
                    self._metrics.close()
                self._metrics = ScrapeSource(targets, interval=1.0)
                self._metrics_targets = targets
            snapshot: MonitorSnapshot = self._metrics.snapshot()
            self._recorded().record(snapshot)
        return snapshot

    def _prometheus(self) -> Any:
        from backends.metrics import PrometheusSource

        with self._lock:
            if self._metrics is None:
                self._metrics = PrometheusSource(self.settings.prometheus_url or "", window="1m")
            return self._metrics

    def _recorded(self) -> Any:
        from backends.monitor_history import SnapshotRecorder

        with self._lock:
            if self._recorder is None:
                self._recorder = SnapshotRecorder(size=300)
            return self._recorder

    def monitor_history(
        self, deployment: str, minutes: float, instance: str = ""
    ) -> MonitorHistory:
        from backends.monitor_history import prometheus_history

        if self.settings.prometheus_url:
            return prometheus_history(self._prometheus(), deployment, minutes, instance)
        return self._recorded().history(deployment, minutes, instance)  # type: ignore[no-any-return]

    def drift_thresholds(self, model: str, version: str) -> DriftThresholds:
        from backends.drift_thresholds import reference_thresholds

        return reference_thresholds(self.settings.tracking_uri, model, version)

    def retrain(
        self, deployment: str, data: str, on_line: Callable[[str], object]
    ) -> RetrainOutcome:
        from backends import containers
        from backends.discovery import scrape_targets
        from backends.errors import NotFound
        from backends.retrain_flow import retrain_challenger

        # The address the monitor reads it at (a port published on every interface → loopback).
        reachable = scrape_targets([containers.get_deployment(self.docker(), deployment)])
        if not reachable:
            raise NotFound(f"deployment {deployment!r} is not running or publishes no port")
        return retrain_challenger(
            self.settings.tracking_uri,
            reachable[0].url,
            Path(data).expanduser(),
            fallback_project=default_project(),
            deployment=deployment,
            on_line=on_line,
        )
