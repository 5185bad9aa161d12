"""Where runs are read from: MLflow's REST API over httpx, or an ``MlflowClient`` for local stores.

Both return runs in the REST API's JSON shape (``{"info": ..., "data": ..., "inputs": ...}``), so
the record mapping and the run index have one input format. The REST path exists because
``import mlflow`` costs ~2 s: `mlops runs list` against a tracking server reads the API with
httpx and never imports mlflow. Local stores (``sqlite:///mlflow.db``, ``file:``) have no API,
so they go through ``MlflowClient`` (``backends.mlflow.client_source``).
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol
from urllib.parse import urlparse

import httpx

from backends.errors import BackendError, Conflict, InvalidInput, NotFound, Unavailable

__all__ = ["RestSource", "RunSource", "source_for"]

Json = dict[str, Any]

_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"}
_INVALID = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "INVALID_STATE"}
_CONFLICT = {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_CONFLICT", "ABORTED"}
_VIEW = {"active": "ACTIVE_ONLY", "deleted": "DELETED_ONLY", "all": "ALL"}
# Answers worth asking again, as MLflow's own client does: a sqlite-backed server answers 500
# ("database is locked") while another worker writes, and a proxy 502-504 while it restarts.
# Every call here reads, so asking again changes nothing on the server.
_TRANSIENT = {429, 500, 502, 503, 504}


class RunSource(Protocol):
    """Read access to runs and experiments on one tracking server or store."""

    uri: str

    def experiment(self, name_or_id: str) -> Json:
        """``{"experiment_id", "name", "lifecycle_stage"}`` by name, else by id; NotFound."""
        ...

    def experiment_by_id(self, experiment_id: str) -> Json:
        """The same, strictly by id."""
        ...

    def experiments(self) -> list[Json]:
        """Every active experiment, most recently updated first (REST shape)."""
        ...

    def search(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: str = "active",
    ) -> tuple[list[Json], str | None]:
        """One page of runs and the token of the next page (None on the last)."""
        ...

    def get_run(self, run_id: str) -> Json:
        """One run; NotFound when absent."""
        ...

    def metric_history(self, run_id: str, key: str) -> list[Json]:
        """Every logged value of a metric: ``{"key", "value", "timestamp", "step"}``."""
        ...

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Json]:
        """``{"path", "is_dir", "file_size"}`` entries under ``path``."""
        ...

    def logged_model(self, model_id: str) -> Json | None:
        """An MLflow 3 logged model (``{"info": {"name", "model_id", ...}}``), None if gone."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def source_for(tracking_uri: str) -> RunSource:
    """The REST source for http(s) tracking servers, the client source for local stores."""
    if urlparse(tracking_uri).scheme in ("http", "https"):
        return RestSource(tracking_uri)
    from backends.mlflow.client_source import ClientSource

    return ClientSource(tracking_uri)


def _error(status: int, body: Any, uri: str) -> BackendError:
    code = str(body.get("error_code", "")) if isinstance(body, dict) else ""
    message = body.get("message") if isinstance(body, dict) else None
    text = " ".join(str(message or f"HTTP {status}").split())
    if code in _NOT_FOUND or (status == 404 and not code):
        return NotFound(text)
    if code in _INVALID:
        return InvalidInput(text)
    if code in _CONFLICT:
        return Conflict(text)
    if status in (401, 403):
        return BackendError(f"{uri} refused access: {text}", title="Permission denied")
    if status in (502, 503, 504):
        return Unavailable(
            f"MLflow tracking server {uri} answered {status}", title="MLflow unreachable"
        )
    return BackendError(text, title="MLflow error")


class RestSource:
    """MLflow's REST API (``/api/2.0/mlflow``) through an injectable ``httpx.Client``.

    Honours MLflow's own client settings: MLFLOW_TRACKING_TOKEN (bearer),
    MLFLOW_TRACKING_USERNAME/PASSWORD (basic), MLFLOW_TRACKING_INSECURE_TLS and
    MLFLOW_TRACKING_SERVER_CERT_PATH.
    """

    def __init__(
        self,
        uri: str,
        *,
        client: httpx.Client | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.25,
    ) -> None:
        self.uri = uri.rstrip("/")
        self.retries = retries
        self.backoff = backoff  # seconds before the first retry, doubled for each next one
        if client is None:
            env = os.environ
            headers = {}
            if token := env.get("MLFLOW_TRACKING_TOKEN"):
                headers["Authorization"] = f"Bearer {token}"
            auth = None
            if (user := env.get("MLFLOW_TRACKING_USERNAME")) is not None:
                auth = httpx.BasicAuth(user, env.get("MLFLOW_TRACKING_PASSWORD", ""))
            verify: bool | str = True
            if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
                verify = False
            elif cert := env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
                verify = cert
            client = httpx.Client(
                base_url=self.uri,
                headers=headers,
                auth=auth,
                verify=verify,
                timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            )
        self._http = client

    def _call(
        self, method: str, endpoint: str, *, params: Json | None = None, body: Json | None = None
    ) -> Json:
        url = f"{self.uri}/api/2.0/mlflow/{endpoint}"
        try:
            response = self._http.request(method, url, params=params, json=body)
            for attempt in range(self.retries):
                if response.status_code not in _TRANSIENT:
                    break
                time.sleep(self.backoff * 2**attempt)
                response = self._http.request(method, url, params=params, json=body)
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"MLflow tracking server {self.uri} did not answer in time "
                f"({exc.__class__.__name__})",
                title="MLflow unreachable",
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"MLflow tracking server {self.uri} is unreachable ({exc.__class__.__name__})",
                title="MLflow unreachable",
            ) from exc
        try:
            payload = response.json() if response.content else {}
        except ValueError:
            payload = {"message": response.text[:200]}
        if response.status_code >= 400:
            raise _error(response.status_code, payload, self.uri)
        if not isinstance(payload, dict):
            raise BackendError(
                f"{self.uri} answered {endpoint} with non-JSON", title="MLflow error"
            )
        return payload

    def experiment(self, name_or_id: str) -> Json:
        try:
            found = self._call(
                "GET", "experiments/get-by-name", params={"experiment_name": name_or_id}
            )
        except NotFound:
            if not name_or_id.isdigit():
                raise NotFound(f"no experiment named {name_or_id!r}") from None
            return self.experiment_by_id(name_or_id)
        experiment: Json = found["experiment"]
        return experiment

    def experiment_by_id(self, experiment_id: str) -> Json:
        try:
            found = self._call("GET", "experiments/get", params={"experiment_id": experiment_id})
        except NotFound:
            raise NotFound(f"no experiment with id {experiment_id!r}") from None
        experiment: Json = found["experiment"]
        return experiment

    def experiments(self) -> list[Json]:
        found: list[Json] = []
        token: str | None = None
        while True:
            body: Json = {
                "max_results": 1000,
                "view_type": "ACTIVE_ONLY",
                "order_by": ["last_update_time DESC"],
            }
            if token:
                body["page_token"] = token
            page = self._call("POST", "experiments/search", body=body)
            found.extend(page.get("experiments", []))
            token = page.get("next_page_token") or None
            if not token:
                return found

    def search(
        self,
        experiment_ids: list[str],
        filter_string: str = "",
        order_by: list[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: str = "active",
    ) -> tuple[list[Json], str | None]:
        body: Json = {
            "experiment_ids": experiment_ids,
            "filter": filter_string,
            "max_results": max_results,
            "order_by": list(order_by or []),
            "run_view_type": _VIEW[view],
        }
        if page_token:
            body["page_token"] = page_token
        page = self._call("POST", "runs/search", body=body)
        return list(page.get("runs", [])), page.get("next_page_token") or None

    def get_run(self, run_id: str) -> Json:
        run: Json = self._call("GET", "runs/get", params={"run_id": run_id})["run"]
        return run

    def metric_history(self, run_id: str, key: str) -> list[Json]:
        points: list[Json] = []
        token: str | None = None
        while True:
            params: Json = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                params["page_token"] = token
            page = self._call("GET", "metrics/get-history", params=params)
            points.extend(page.get("metrics", []))
            token = page.get("next_page_token") or None
            if not token:
                return points

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[Json]:
        params: Json = {"run_id": run_id}
        if path:
            params["path"] = path
        files: list[Json] = self._call("GET", "artifacts/list", params=params).get("files", [])
        return files

    def logged_model(self, model_id: str) -> Json | None:
        try:
            model: Json = self._call("GET", f"logged-models/{model_id}")["model"]
        except NotFound:
            return None
        return model

    def close(self) -> None:
        self._http.close()
