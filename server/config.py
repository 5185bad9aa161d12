"""Server settings from command-line flags and MLOPS_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def admin_token_from(env: dict[str, str] | os._Environ[str]) -> str | None:
    """MLOPS_ADMIN_TOKEN_FILE's contents (a mounted secret), else MLOPS_ADMIN_TOKEN."""
    path = env.get("MLOPS_ADMIN_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError as exc:
            raise SystemExit(f"error: cannot read MLOPS_ADMIN_TOKEN_FILE {path}: {exc}") from exc
    return env.get("MLOPS_ADMIN_TOKEN") or None


def load_credentials(env: os._Environ[str] | dict[str, str]) -> list[str]:
    """MLOPS_CREDENTIALS_FILE (JSON: MLflow's variable → value, a file of the deployment's
    volume) into ``env``, where MLflow's client reads a token or password at each request.
    A variable already in the environment is kept. Returns the names it set."""
    import json

    path = env.get("MLOPS_CREDENTIALS_FILE")
    if not path:
        return []
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read MLOPS_CREDENTIALS_FILE {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise SystemExit(f"error: MLOPS_CREDENTIALS_FILE {path} is not a JSON object")
    taken = []
    for name, value in values.items():
        # Only MLflow's own variables: the file cannot reconfigure the server itself.
        mlflows = isinstance(name, str) and name.startswith("MLFLOW_") and isinstance(value, str)
        if mlflows and name not in env:
            env[name] = value
            taken.append(name)
    return taken


def _admin_token() -> str | None:
    return admin_token_from(os.environ)


@dataclass(frozen=True)
class ServerConfig:
    model_ref: str
    max_body_bytes: int = 5 * 1024 * 1024
    max_batch_rows: int = 256
    max_wait_ms: float = 0.0
    max_queue_rows: int = 20_000
    request_timeout: float = 30.0
    admin_token: str | None = None
    drift_window: int = 1000
    drift_interval: float = 5.0
    follow_alias: bool = False
    follow_interval: float = 10.0
    max_rows: int = 100_000  # rows per request; more is a 413
    max_in_flight: int = 512  # requests admitted at once; more is a 503 with Retry-After
    body_timeout: float = 30.0  # seconds to receive a whole body; a trickled one is cut off
    header_timeout: float = 10.0  # seconds to receive a request's headers
    keep_alive: float = 75.0  # idle seconds a kept-alive connection stays open
    drift_stale_after: float = 600.0  # no inputs for this long: drift gauges are withdrawn
    public_docs: bool = False  # /docs and /redoc answer loopback clients only unless set
    log_dir: str = ""  # the prediction log's directory ("" : no log; labels still judged)
    log_sample: float = 1.0  # the share of requests whose rows are logged
    log_file_bytes: int = 16 * 1024 * 1024  # a log file is rotated past this size
    log_max_bytes: int = 256 * 1024 * 1024  # the log directory's cap: oldest files go
    feedback_rows: int = 100_000  # recent rows whose predictions labels can be joined to
    quality_window: int = 1000  # labelled rows per version that realized quality covers

    def __post_init__(self) -> None:
        if not 0.0 <= self.log_sample <= 1.0:
            raise SystemExit(f"error: MLOPS_LOG_SAMPLE must be within 0..1, not {self.log_sample}")

    @classmethod
    def from_env(cls, model_ref: str | None = None, **overrides: object) -> ServerConfig:
        """Defaults, then MLOPS_* variables, then explicit overrides (flags)."""
        ref = model_ref or os.environ.get("MLOPS_MODEL_URI", "")
        values: dict[str, object] = {
            "max_body_bytes": _env_int("MLOPS_MAX_BODY_BYTES", cls.max_body_bytes),
            "max_batch_rows": _env_int("MLOPS_MAX_BATCH_ROWS", cls.max_batch_rows),
            "max_wait_ms": _env_float("MLOPS_MAX_WAIT_MS", cls.max_wait_ms),
            "max_queue_rows": _env_int("MLOPS_MAX_QUEUE_ROWS", cls.max_queue_rows),
            "request_timeout": _env_float("MLOPS_REQUEST_TIMEOUT", cls.request_timeout),
            "admin_token": _admin_token(),
            "drift_window": _env_int("MLOPS_DRIFT_WINDOW", cls.drift_window),
            "drift_interval": _env_float("MLOPS_DRIFT_INTERVAL", cls.drift_interval),
            "follow_alias": os.environ.get("MLOPS_FOLLOW_ALIAS", "") in ("1", "true", "yes"),
            "follow_interval": _env_float("MLOPS_FOLLOW_INTERVAL", cls.follow_interval),
            "max_rows": _env_int("MLOPS_MAX_ROWS", cls.max_rows),
            "max_in_flight": _env_int("MLOPS_MAX_IN_FLIGHT", cls.max_in_flight),
            "body_timeout": _env_float("MLOPS_BODY_TIMEOUT", cls.body_timeout),
            "header_timeout": _env_float("MLOPS_HEADER_TIMEOUT", cls.header_timeout),
            "keep_alive": _env_float("MLOPS_KEEP_ALIVE", cls.keep_alive),
            "drift_stale_after": _env_float("MLOPS_DRIFT_STALE_AFTER", cls.drift_stale_after),
            "public_docs": os.environ.get("MLOPS_PUBLIC_DOCS", "") in ("1", "true", "yes"),
            "log_dir": os.environ.get("MLOPS_LOG_DIR", cls.log_dir),
            "log_sample": _env_float("MLOPS_LOG_SAMPLE", cls.log_sample),
            "log_file_bytes": _env_int("MLOPS_LOG_FILE_BYTES", cls.log_file_bytes),
            "log_max_bytes": _env_int("MLOPS_LOG_MAX_BYTES", cls.log_max_bytes),
            "feedback_rows": _env_int("MLOPS_FEEDBACK_ROWS", cls.feedback_rows),
            "quality_window": _env_int("MLOPS_QUALITY_WINDOW", cls.quality_window),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model_ref=ref, **values)  # type: ignore[arg-type]
