"""The tracking calls a training needs around its entry point: create the run (with the tags
``mlflow run`` sets), log its parameters, read and set its status, upload a file to it.

Against a tracking server these are a handful of REST calls (MLflow's REST API 2.0), made
without importing MLflow: the import alone costs about as much as fitting the example model,
and the entry point imports MLflow itself anyway. A local store (``sqlite:``, a directory) has
no REST API: there the same calls go through MLflow's client.
"""

from __future__ import annotations

import getpass
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlparse

from backends.errors import BackendError, Unavailable

__all__ = ["ProjectRuns", "git_facts", "project_runs_for"]

TERMINAL = ("FINISHED", "FAILED", "KILLED")


class ProjectRuns(Protocol):
    def experiment_id(self, name: str) -> str: ...
    def create_run(self, experiment_id: str, tags: dict[str, str]) -> str: ...
    def log_params(self, run_id: str, params: dict[str, str]) -> None: ...
    def status(self, run_id: str) -> str: ...
    def end_run(self, run_id: str, status: str) -> None: ...
    def upload(self, run_id: str, local: Path, artifact_path: str) -> None: ...


def project_runs_for(tracking_uri: str) -> ProjectRuns:
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return RestRuns(tracking_uri)
    return ClientRuns(tracking_uri)


def git_facts(directory: Path) -> dict[str, str]:
    """The tags ``mlflow run`` derives from the project's git checkout: the commit, the
    repository's remote, and the source name ``file://<top>#<subdir>`` (MLflow's form)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(directory), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None

    top = git("rev-parse", "--show-toplevel")
    if top is None:
        return {"mlflow.source.name": str(directory.resolve())}
    sub = directory.resolve().relative_to(Path(top).resolve()).as_posix()
    facts = {"mlflow.source.name": f"file://{top}" + (f"#{sub}" if sub != "." else "")}
    if commit := git("rev-parse", "HEAD"):
        facts["mlflow.source.git.commit"] = commit
    if remote := git("remote", "get-url", "origin"):
        facts["mlflow.source.git.repoURL"] = remote
    return facts


def run_tags(project_dir: Path, entry_point: str) -> dict[str, str]:
    """What ``mlflow run --env-manager local`` tags a run with (its runner and backend too)."""
    return {
        "mlflow.user": _user(),
        "mlflow.source.type": "PROJECT",
        "mlflow.project.entryPoint": entry_point,
        "mlflow.project.env": "local",
        "mlflow.project.backend": "local",
        **git_facts(project_dir),
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return "unknown"


class RestRuns:
    """MLflow's REST API with MLflow's own credentials and TLS settings (``http_options``)."""

    def __init__(self, tracking_uri: str) -> None:
        from backends.mlflow.client import http_options

        self.tracking_uri = tracking_uri
        self.base = tracking_uri.rstrip("/")
        self.options = http_options()

    def _call(
        self,
        method: str,
        endpoint: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        import httpx

        from backends.mlflow.client import error_for_code

        try:
            response = httpx.request(
                method,
                f"{self.base}/api/2.0/mlflow/{endpoint}",
                params=params,
                json=body,
                timeout=30,
                **self.options,
            )
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"MLflow tracking server {self.tracking_uri} is unreachable "
                f"({exc.__class__.__name__})",
                title="MLflow unreachable",
            ) from exc
        try:
            data: dict[str, Any] = response.json() if response.content else {}
        except ValueError:
            data = {}
        if response.is_success:
            return data
        if response.status_code >= 500 and "error_code" not in data:
            raise Unavailable(
                f"MLflow tracking server {self.tracking_uri} answered {response.status_code}",
                title="MLflow unreachable",
            )
        raise error_for_code(
            str(data.get("error_code", response.status_code)),
            str(data.get("message") or response.text[:200]),
        )

    def experiment_id(self, name: str) -> str:
        from backends.errors import Conflict, NotFound

        for _ in range(2):  # another trainer may create it between our look and our create
            try:
                found = self._call(
                    "GET", "experiments/get-by-name", params={"experiment_name": name}
                )
                return str(found["experiment"]["experiment_id"])
            except NotFound:
                pass
            try:
                return str(
                    self._call("POST", "experiments/create", body={"name": name})["experiment_id"]
                )
            except Conflict:
                continue
        raise BackendError(f"experiment {name!r} could not be found or created")

    def create_run(self, experiment_id: str, tags: dict[str, str]) -> str:
        created = self._call(
            "POST",
            "runs/create",
            body={
                "experiment_id": experiment_id,
                "user_id": tags.get("mlflow.user", ""),
                "start_time": int(time.time() * 1000),
                "tags": [{"key": k, "value": v} for k, v in tags.items()],
            },
        )
        return str(created["run"]["info"]["run_id"])

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        if params:
            items = [{"key": k, "value": v} for k, v in params.items()]
            self._call("POST", "runs/log-batch", body={"run_id": run_id, "params": items})

    def _info(self, run_id: str) -> dict[str, Any]:
        info: dict[str, Any] = self._call("GET", "runs/get", params={"run_id": run_id})["run"][
            "info"
        ]
        return info

    def status(self, run_id: str) -> str:
        return str(self._info(run_id)["status"])

    def end_run(self, run_id: str, status: str) -> None:
        self._call(
            "POST",
            "runs/update",
            body={"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)},
        )

    def upload(self, run_id: str, local: Path, artifact_path: str) -> None:
        """Through the server's artifact proxy when the run's artifacts live behind it (the
        default of an ``mlflow server``); anywhere else MLflow's client knows the store."""
        import httpx

        root = str(self._info(run_id).get("artifact_uri", ""))
        parsed = urlparse(root)
        if parsed.scheme != "mlflow-artifacts":
            ClientRuns(self.tracking_uri).upload(run_id, local, artifact_path)
            return
        where = "/".join(p for p in (parsed.path.strip("/"), artifact_path.strip("/")) if p)
        url = f"{self.base}/api/2.0/mlflow-artifacts/artifacts/{quote(where)}/{quote(local.name)}"
        try:
            response = httpx.put(url, content=local.read_bytes(), timeout=60, **self.options)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"MLflow tracking server {self.tracking_uri} is unreachable "
                f"({exc.__class__.__name__})",
                title="MLflow unreachable",
            ) from exc
        if not response.is_success:
            raise BackendError(
                f"MLflow refused the artifact {artifact_path}/{local.name} "
                f"({response.status_code}: {response.text[:200]})",
                title="MLflow error",
            )


class ClientRuns:
    """The same calls through MLflow's client, for stores without a REST API."""

    def __init__(self, tracking_uri: str) -> None:
        from backends.mlflow.client import connect

        self.tracking_uri = tracking_uri
        self.client = connect(tracking_uri)

    def experiment_id(self, name: str) -> str:
        from backends.errors import Conflict
        from backends.mlflow.client import translate_errors

        with translate_errors(self.tracking_uri):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
        try:
            with translate_errors(self.tracking_uri):
                return str(self.client.create_experiment(name))
        except Conflict:
            with translate_errors(self.tracking_uri):
                return str(self.client.get_experiment_by_name(name).experiment_id)

    def create_run(self, experiment_id: str, tags: dict[str, str]) -> str:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.tracking_uri):
            return str(self.client.create_run(experiment_id, tags=tags).info.run_id)

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        from backends.mlflow.client import translate_errors

        with translate_errors(self.tracking_uri):
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])

    def status(self, run_id: str) -> str:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.tracking_uri):
            return str(self.client.get_run(run_id).info.status)

    def end_run(self, run_id: str, status: str) -> None:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.tracking_uri):
            self.client.set_terminated(run_id, status)

    def upload(self, run_id: str, local: Path, artifact_path: str) -> None:
        from backends.mlflow.client import translate_errors

        with translate_errors(self.tracking_uri):
            self.client.log_artifact(run_id, str(local), artifact_path=artifact_path or None)
