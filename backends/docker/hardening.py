"""How our containers are created: least privilege, bounded resources, rotated logs, and the
router's admin token in a file of the deployment's own volume (never in labels or env).

Every container: all capabilities dropped, no new privileges, a read-only root filesystem with
a tmpfs on /tmp, memory, pids and log-size limits, and a stop timeout longer than the server's
own drain. Each limit has an ``MLOPS_CONTAINER_*`` variable.
"""

from __future__ import annotations

import io
import os
import secrets
import tarfile
import time
from typing import Any

from backends.docker.engine import LABEL, translate_errors

__all__ = [
    "CA_FILE",
    "CLIENT_CERT_FILE",
    "CREDENTIALS_FILE",
    "CREDENTIALS_MOUNT",
    "LOG_MOUNT",
    "SERVER_UID",
    "STATE_DIR",
    "TOKEN_FILE",
    "create",
    "credentials_volume",
    "log_volume",
    "new_token",
    "read_token",
    "state_volume",
    "write_credentials",
    "write_state",
]

SERVER_UID = 10001  # the image's user (Dockerfile)
STATE_MOUNT = "/var/lib/mlops"  # the deployment's volume, in the router
STATE_DIR = f"{STATE_MOUNT}/state"  # owned by the server user: the token, the upstream
TOKEN_FILE = f"{STATE_DIR}/admin-token"
# A follow-alias model container's MLflow credentials, CA bundle and client certificate, in a
# volume of their own that only model containers mount (never the router's, whose admin token a
# model's code must not read, nor the other way round): read by the server at start
# (MLOPS_CREDENTIALS_FILE), never in its environment or labels.
CREDENTIALS_MOUNT = "/var/lib/mlops-credentials"
CREDENTIALS_FILE = f"{CREDENTIALS_MOUNT}/secrets/mlflow-credentials.json"
CA_FILE = f"{CREDENTIALS_MOUNT}/secrets/mlflow-ca.pem"
CLIENT_CERT_FILE = f"{CREDENTIALS_MOUNT}/secrets/mlflow-client.pem"
LOG_MOUNT = "/var/lib/mlops-predictions"  # the prediction log volume, in model containers
STOP_TIMEOUT = 30  # seconds docker waits after SIGTERM; the server drains in 25


def memory_limit() -> str:
    """A container's memory limit, in Docker's spelling (``2g``)."""
    return os.environ.get("MLOPS_CONTAINER_MEMORY", "2g")


def pids_limit() -> int:
    """How many processes a container may run (a fork bomb in a model's code stops there)."""
    return int(os.environ.get("MLOPS_CONTAINER_PIDS", "512"))


def log_config() -> dict[str, Any]:
    """A container's logging: json-file, rotated."""
    env = os.environ
    return {
        "type": "json-file",
        "config": {
            "max-size": env.get("MLOPS_CONTAINER_LOG_SIZE", "10m"),
            "max-file": env.get("MLOPS_CONTAINER_LOG_FILES", "3"),
        },
    }


def _limits() -> dict[str, Any]:
    return {
        "mem_limit": memory_limit(),
        "pids_limit": pids_limit(),
        "log_config": log_config(),
    }


def create(
    client: Any,
    image: str,
    name: str,
    *,
    command: list[str] | None,
    environment: dict[str, str],
    labels: dict[str, str],
    volumes: dict[str, str] | None = None,
) -> Any:
    """Create (not start) a hardened container on the host network."""
    api = client.api
    binds = {vol: {"bind": path, "mode": "rw"} for vol, path in (volumes or {}).items()}
    host_config = api.create_host_config(
        network_mode="host",
        restart_policy={"Name": "unless-stopped"},  # back after a crash or an engine restart
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=256m,mode=1777"},
        binds=binds or None,
        **_limits(),
    )
    with translate_errors():
        created = api.create_container(
            image,
            command=command,
            name=name,
            environment=environment,
            labels=labels,
            host_config=host_config,
            stop_signal="SIGTERM",
            stop_timeout=STOP_TIMEOUT,
            volumes=[v["bind"] for v in binds.values()] or None,
        )
        return client.containers.get(created["Id"])


def state_volume(client: Any, deployment: str) -> str:
    """The deployment's own volume (created once; removed with the deployment)."""
    name = f"mlops-{deployment}-state"
    with translate_errors():
        client.volumes.create(name=name, labels={f"{LABEL}.deployment": deployment})
    return name


def log_volume(client: Any, deployment: str) -> str:
    """The deployment's prediction log volume: every model container of the deployment mounts
    it, so the log outlives version switches; `deploy rm` keeps it (the rows and labels are
    training data), `docker volume rm` removes it."""
    name = f"mlops-{deployment}-predictions"
    with translate_errors():
        client.volumes.create(name=name, labels={f"{LABEL}.deployment": deployment})
    return name


def new_token() -> str:
    return secrets.token_urlsafe(24)


def write_state(container: Any, token: str) -> None:
    """Put the state directory and the admin token (readable by the server user only) into a
    created router container's volume, before it starts."""
    _put_state(container, {"admin-token": token.encode()}, mount=STATE_MOUNT, folder="state")


def write_credentials(container: Any, files: dict[str, bytes]) -> None:
    """Put MLflow's credentials (``mlflow-credentials.json``), CA bundle and client certificate,
    readable by the server user only, into a created model container's credentials volume,
    before it starts."""
    _put_state(container, files, mount=CREDENTIALS_MOUNT, folder="secrets")


def credentials_volume(client: Any, deployment: str) -> str:
    """The deployment's volume for follow-alias credentials (model containers only)."""
    name = f"mlops-{deployment}-credentials"
    with translate_errors():
        client.volumes.create(name=name, labels={f"{LABEL}.deployment": deployment})
    return name


def _put_state(container: Any, files: dict[str, bytes], *, mount: str, folder: str) -> None:
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo(folder)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o700
        directory.uid = directory.gid = SERVER_UID
        directory.mtime = now
        tar.addfile(directory)
        for name, data in files.items():
            secret = tarfile.TarInfo(f"{folder}/{name}")
            secret.size, secret.mode = len(data), 0o400
            secret.uid = secret.gid = SERVER_UID
            secret.mtime = now
            tar.addfile(secret, io.BytesIO(data))
    with translate_errors():
        container.put_archive(mount, buffer.getvalue())


def read_token(router: Any) -> str:
    """The router's admin token, read from its volume (as `docker cp` would): only someone who
    can drive the engine can switch its traffic. Older routers kept it in a label."""
    legacy = router.labels.get(f"{LABEL}.router-token", "")
    if legacy:
        return str(legacy)
    with translate_errors():
        stream, _ = router.get_archive(TOKEN_FILE)
        raw = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        member = tar.getmembers()[0]
        extracted = tar.extractfile(member)
        return extracted.read().decode().strip() if extracted else ""
