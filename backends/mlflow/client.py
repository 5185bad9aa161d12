"""The one place that builds an MLflow client and turns MLflow's failures into ours.

``import mlflow`` costs ~2 s, so it happens inside ``connect`` (a worker thread in the TUI,
inside the command in the CLI), never at module import.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

import httpx

from backends.errors import BackendError, Conflict, InvalidInput, NotFound, Unavailable

__all__ = [
    "connect",
    "error_for_code",
    "http_options",
    "probe",
    "probe_stores",
    "registry_uri_for",
    "translate_errors",
]

# MLflow retries a refused connection 7 times with exponential backoff (minutes of silence);
# an operator wants "unreachable" within seconds. Callers may still override both.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND"}
_INVALID = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST", "INVALID_STATE"}
_CONFLICT = {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS", "RESOURCE_CONFLICT", "ABORTED"}


def http_options() -> dict[str, Any]:
    """What MLflow's own client would send, from MLflow's variables and as MLflow reads them:
    user and password first, else the token (MLFLOW_TRACKING_USERNAME/_PASSWORD, _TOKEN); no
    verification when MLFLOW_TRACKING_INSECURE_TLS is true or 1, else the CA bundle
    (MLFLOW_TRACKING_SERVER_CERT_PATH) and a client certificate
    (MLFLOW_TRACKING_CLIENT_CERT_PATH) — so a probe sees the server as the SDK will."""
    env = os.environ
    options: dict[str, Any] = {}
    token = env.get("MLFLOW_TRACKING_TOKEN")
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        options["auth"] = (user, password)
    elif token:
        options["headers"] = {"Authorization": f"Bearer {token}"}
    if env.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() in ("true", "1"):
        options["verify"] = False
        return options
    ca, client_cert = (
        env.get("MLFLOW_TRACKING_SERVER_CERT_PATH"),
        env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"),
    )
    if ca or client_cert:
        import ssl

        try:
            context = ssl.create_default_context(
                cafile=ca if ca and not os.path.isdir(ca) else None,  # a missing one: said
                capath=ca if ca and os.path.isdir(ca) else None,
            )
            if client_cert:
                context.load_cert_chain(client_cert)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidInput(
                f"MLflow's TLS settings cannot be used ({exc}): check "
                "MLFLOW_TRACKING_SERVER_CERT_PATH and MLFLOW_TRACKING_CLIENT_CERT_PATH",
                title="MLflow TLS settings",
            ) from exc
        options["verify"] = context
    return options


def probe(tracking_uri: str, timeout: float = 3.0, what: str = "tracking server") -> None:
    """Raise Unavailable fast when an HTTP tracking server does not answer its health check,
    or answers that our credentials are refused (asked with MLflow's own credentials and TLS
    settings: a probe must not call a server down that the SDK reaches, nor up one it cannot)."""
    if urlparse(tracking_uri).scheme not in ("http", "https"):
        return  # a local store (sqlite, file) is always "reachable"; errors surface on use
    base = tracking_uri.rstrip("/")
    options = http_options()
    try:
        # Not /health: it is open on servers that guard everything else. A search of one
        # experiment is let in wherever we are (MLflow's auth app filters what it returns
        # rather than refusing it), and refused with 401/403 where we are not.
        response = httpx.get(
            base + "/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            timeout=timeout,
            **options,
        )
    except httpx.HTTPError as exc:
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = "; its certificate is not trusted (MLFLOW_TRACKING_SERVER_CERT_PATH=CA bundle)"
        raise Unavailable(
            f"MLflow {what} {tracking_uri} is unreachable ({exc.__class__.__name__}{hint})",
            title="MLflow unreachable",
        ) from exc
    if response.status_code in (401, 403):
        how = (
            "a token"
            if "headers" in options
            else "user and password"
            if "auth" in options
            else "none"
        )
        raise Unavailable(
            f"MLflow {what} {tracking_uri} refused our credentials "
            f"({response.status_code}; sent: {how}; MLFLOW_TRACKING_TOKEN or "
            "MLFLOW_TRACKING_USERNAME/PASSWORD, or the context's credentials)",
            title="MLflow refused the credentials",
        )
    if response.status_code >= 500:
        raise Unavailable(
            f"MLflow {what} {tracking_uri} answered {response.status_code}",
            title="MLflow unreachable",
        )


_REGISTRY_STORES = threading.Lock()
_registry_stores_ready = False


def _fill_registry_stores() -> None:
    """MLflow fills its table of registry store schemes on first use, in a global and without
    a lock: a thread that comes while another is filling it finds only "databricks" and fails
    with "Model Registry features are not supported by the store with URI http://…" (CI saw it
    with fifty moves starting at once). Fill it once, under a lock, before any client."""
    global _registry_stores_ready
    if _registry_stores_ready:
        return
    with _REGISTRY_STORES:
        if not _registry_stores_ready:
            from mlflow.tracking._model_registry import utils

            utils._get_store_registry()  # type: ignore[no-untyped-call]
            _registry_stores_ready = True


def registry_uri_for(tracking_uri: str) -> str:
    """The model registry beside ``tracking_uri``: the operator's MLFLOW_REGISTRY_URI when set
    (MLflow allows a registry apart from the tracking server), else the tracking server. While
    ``using_tracking_uri`` lends MLflow's globals (which MLflow mirrors into the variable), the
    operator's own value is the one it put aside."""
    g = _GLOBAL
    with g.changed:
        configured = g.saved[1] if g.users else os.environ.get("MLFLOW_REGISTRY_URI")
    return configured or tracking_uri


def probe_stores(tracking_uri: str) -> None:
    """Probe the tracking server and, when it is another one, the model registry."""
    probe(tracking_uri)
    registry_uri = registry_uri_for(tracking_uri)
    if registry_uri != tracking_uri:
        probe(registry_uri, what="model registry")


def connect(tracking_uri: str, *, check: bool = True) -> Any:
    """An ``MlflowClient`` for tracking at ``tracking_uri`` and its registry (both probed
    first)."""
    registry_uri = registry_uri_for(tracking_uri)
    if check:
        probe_stores(tracking_uri)
    _fill_registry_stores()
    from mlflow.tracking import MlflowClient

    with translate_errors(tracking_uri):
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)


@contextmanager
def translate_errors(tracking_uri: str = "") -> Iterator[None]:
    """Re-raise MLflow and transport exceptions as ``backends.errors``."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        raise _translate(exc, tracking_uri) from exc


def _translate(exc: Exception, tracking_uri: str) -> BackendError:
    from mlflow.exceptions import MlflowException
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    if isinstance(exc, RequestsConnectionError | Timeout):
        return Unavailable(
            f"MLflow tracking server {tracking_uri} is unreachable", title="MLflow unreachable"
        )
    if isinstance(exc, MlflowException):
        code = str(exc.error_code)
        message = _one_line(exc.message)
        if "API request to" in message and ("Max retries" in message or "failed" in message):
            return Unavailable(
                f"MLflow tracking server {tracking_uri} is unreachable",
                title="MLflow unreachable",
            )
        return error_for_code(code, message)
    return BackendError(_one_line(f"{exc.__class__.__name__}: {exc}"), title="MLflow error")


def error_for_code(code: str, message: str) -> BackendError:
    """Our error for an MLflow error code (from the SDK's exception or a REST error body)."""
    message = _one_line(message)
    if code in _NOT_FOUND:
        return NotFound(message)
    if code in _INVALID:
        return InvalidInput(message)
    if code in _CONFLICT:
        return Conflict(message)
    return BackendError(message, title="MLflow error")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _GlobalUri:
    """Who holds MLflow's process-wide URIs: one URI at a time, shared by every thread that
    asks for the same one (the console's workers do, concurrently), restored by the last."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.uri: str | None = None
        self.users = 0
        self.saved: tuple[str | None, str | None] = (None, None)


_GLOBAL = _GlobalUri()


@contextmanager
def quiesced() -> Iterator[None]:
    """A block in which no thread holds MLflow's process-wide URIs (the console's context
    switch rewrites the variables they were lent from: a lender restoring them afterwards
    would put the old context's registry back)."""
    g = _GLOBAL
    with g.changed:
        g.changed.wait_for(lambda: g.users == 0)
        yield


@contextmanager
def using_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """Point mlflow's process-wide URIs at ``tracking_uri`` for the block, then restore them.

    Some MLflow calls resolve nested URIs (a registered version's ``models:/m-...`` source)
    through the global tracking URI whatever URI the outer call was given. Threads asking for
    the same URI share it; one asking for another waits until the first ones are done.
    """
    import mlflow

    g = _GLOBAL
    with g.changed:
        g.changed.wait_for(lambda: g.users == 0 or g.uri == tracking_uri)
        if g.users == 0:
            # MLflow mirrors both URIs into MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI for
            # subprocesses. Restoring through get_*_uri() would pin its *resolved default*
            # (./mlflow.db) into every process started afterwards: keep what was set, or nothing.
            g.saved = (os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("MLFLOW_REGISTRY_URI"))
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(g.saved[1] or tracking_uri)  # the operator's registry
            g.uri = tracking_uri
        g.users += 1
    try:
        yield
    finally:
        with g.changed:
            g.users -= 1
            if g.users == 0:
                previous_tracking, previous_registry = g.saved
                mlflow.set_tracking_uri(previous_tracking)  # type: ignore[arg-type]  # None unsets
                mlflow.set_registry_uri(previous_registry)  # type: ignore[arg-type]
                if previous_registry is None:
                    os.environ.pop("MLFLOW_REGISTRY_URI", None)
                g.uri = None
                g.changed.notify_all()
