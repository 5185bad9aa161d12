"""Deployments: serving containers behind a stable front address, switched with no failed request.

A deployment NAME is two kinds of container, all on the host's network and bound to loopback
unless asked otherwise (so nothing is published through Docker's proxy and every address is
127.0.0.1):
  - ``mlops-NAME``: the router (``python -m server.router``) on the deployment's port, the
    address clients use;
  - ``mlops-NAME-vVERSION-XXXX``: the model server for one version, on a private free port.
Deploying a new version over an existing deployment (``deploy``) or going back (``rollback``)
starts the new model container, waits for ``/ready``, switches the router (which returns once the
old container has nothing in flight), then removes the old container. Each model container
remembers the version it replaced (label ``previous-version``), which is what rollback goes to.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx

from backends.docker_engine import LABEL, translate_errors
from backends.errors import BackendError, Conflict, InvalidInput, NotFound
from backends.images import _parse_time
from backends.records import Deployment, ServingImage

__all__ = [
    "check_can_follow",
    "deploy",
    "deployment_logs",
    "get_deployment",
    "list_deployments",
    "remove_deployment",
    "rollback_target",
]

ROLE = f"{LABEL}.role"
DEPLOYMENT = f"{LABEL}.deployment"


class ContainerFailed(BackendError):
    """A container exited or never became ready; the message carries its last log lines."""

    title = "Container failed"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def list_deployments(client: Any) -> list[Deployment]:
    """Every deployment with the version its router currently serves."""
    with translate_errors():
        routers = client.containers.list(all=True, filters={"label": f"{ROLE}=router"})
        models = client.containers.list(all=True, filters={"label": f"{ROLE}=model"})
    by_name: dict[str, list[Any]] = {}
    for c in models:
        by_name.setdefault(c.labels.get(DEPLOYMENT, ""), []).append(c)
    return sorted(
        (_record(r, by_name.get(r.labels.get(DEPLOYMENT, ""), [])) for r in routers),
        key=lambda d: d.name,
    )


def get_deployment(client: Any, name: str) -> Deployment:
    for d in list_deployments(client):
        if d.name == name:
            return d
    raise NotFound(f"no deployment named {name!r} (see `mlops deploy ps`)")


def _record(router: Any, models: list[Any]) -> Deployment:
    labels = router.labels
    running = [m for m in models if m.status == "running"]
    active = _newest(running or models)
    ml = active.labels if active is not None else {}
    state = router.status
    health = _health(active) if active is not None and state == "running" else "none"
    port = labels.get(f"{LABEL}.port")
    return Deployment(
        name=labels.get(DEPLOYMENT, router.name),
        model=ml.get(f"{LABEL}.model", ""),
        version=ml.get(f"{LABEL}.version", ""),
        alias=ml.get(f"{LABEL}.alias", ""),
        run_id=ml.get(f"{LABEL}.run-id", ""),
        image=(active.image.tags[0] if active is not None and active.image.tags else ""),
        container_id=active.short_id if active is not None else "",
        state=state if active is None or active.status == "running" else active.status,
        health=health,
        host=labels.get(f"{LABEL}.host", "127.0.0.1"),
        port=int(port) if port else None,
        started_at=_parse_time(router.attrs.get("State", {}).get("StartedAt", "")),
        follow_alias=ml.get(f"{LABEL}.follow-alias") == "true",
    )


def _newest(containers: list[Any]) -> Any | None:
    if not containers:
        return None
    return max(containers, key=lambda c: c.attrs.get("Created", ""))


def _health(container: Any) -> str:
    state = container.attrs.get("State", {})
    return str(state.get("Health", {}).get("Status", "none"))


def _model_containers(client: Any, name: str) -> list[Any]:
    with translate_errors():
        return list(
            client.containers.list(
                all=True, filters={"label": [f"{ROLE}=model", f"{DEPLOYMENT}={name}"]}
            )
        )


def _router(client: Any, name: str) -> Any | None:
    with translate_errors():
        found = client.containers.list(
            all=True, filters={"label": [f"{ROLE}=router", f"{DEPLOYMENT}={name}"]}
        )
    return found[0] if found else None


def deploy(
    client: Any,
    image: ServingImage,
    name: str,
    *,
    port: int = 8080,
    host: str = "127.0.0.1",
    alias: str = "",
    follow_alias_ref: str | None = None,
    tracking_uri: str | None = None,
    timeout: float = 120.0,
) -> tuple[Deployment, str | None]:
    """Run ``image`` as deployment ``name``; an existing deployment is switched with no failed
    request. Returns the deployment and the version it replaced (None for a new one)."""
    if follow_alias_ref:
        check_can_follow(tracking_uri)
    router = _router(client, name)
    previous = _active_model(client, name) if router is not None else None
    if router is not None and router.status != "running":
        _remove(router)
        router = None
    if router is None and not port_is_free(port, host if host != "0.0.0.0" else "127.0.0.1"):
        raise Conflict(f"port {port} on {host} is already in use; choose another with --port")

    token = router.labels.get(f"{LABEL}.router-token") if router is not None else None
    model_port = free_port()
    prev_version = previous.labels.get(f"{LABEL}.version") if previous is not None else None
    new = _start_model(
        client, image, name, model_port, prev_version, alias, follow_alias_ref, tracking_uri
    )
    try:
        _wait_ready(new, f"http://127.0.0.1:{model_port}", timeout)
    except BackendError:
        _remove(new)
        raise
    upstream = f"http://127.0.0.1:{model_port}"
    if router is None:
        token = secrets.token_urlsafe(24)
        router = _start_router(client, image, name, port, host, upstream, token)
        try:
            _wait_ready(router, f"http://127.0.0.1:{port}", timeout, path="/-/router/health")
        except BackendError:
            _remove(router)
            _remove(new)
            raise
    else:
        _switch(router, port, upstream)
        if previous is not None:
            _remove(previous)
    for stale in _model_containers(client, name):
        if stale.id != new.id and stale.status != "running":
            _remove(stale)
    return get_deployment(client, name), prev_version


def check_can_follow(tracking_uri: str | None) -> None:
    """A container that follows an alias reads the registry itself: only over HTTP."""
    if not (tracking_uri or "").startswith(("http://", "https://")):
        raise InvalidInput(
            "following an alias needs an HTTP tracking server (MLFLOW_TRACKING_URI="
            "http://...): a container cannot read a local sqlite store"
        )


def rollback_target(client: Any, name: str) -> str:
    """The version the current one replaced (what `deploy rollback` goes back to)."""
    active = _active_model(client, name)
    if active is None:
        raise NotFound(f"no deployment named {name!r} (see `mlops deploy ps`)")
    previous = active.labels.get(f"{LABEL}.previous-version", "")
    if not previous:
        raise BackendError(
            f"deployment {name!r} has no earlier version to roll back to",
            title="Nothing to roll back",
        )
    return str(previous)


def remove_deployment(client: Any, name: str) -> list[str]:
    """Stop and remove the router and every model container of ``name``."""
    router = _router(client, name)
    models = _model_containers(client, name)
    if router is None and not models:
        raise NotFound(f"no deployment named {name!r} (see `mlops deploy ps`)")
    removed = []
    for c in ([router] if router is not None else []) + models:
        removed.append(c.name)
        _remove(c)
    return removed


def deployment_logs(
    client: Any, name: str, *, follow: bool = False, tail: int = 100
) -> Iterator[str]:
    """The active model container's log lines (``follow`` streams until interrupted)."""
    active = _active_model(client, name)
    if active is None:
        raise NotFound(f"no deployment named {name!r} (see `mlops deploy ps`)")
    with translate_errors():
        if not follow:
            yield from active.logs(tail=tail).decode(errors="replace").splitlines()
            return
        buffer = b""
        for chunk in active.logs(stream=True, follow=True, tail=tail):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield line.decode(errors="replace")


def _active_model(client: Any, name: str) -> Any | None:
    containers = _model_containers(client, name)
    running = [c for c in containers if c.status == "running"]
    return _newest(running or containers)


def _start_model(
    client: Any,
    image: ServingImage,
    name: str,
    port: int,
    previous_version: str | None,
    alias: str,
    follow_ref: str | None,
    tracking_uri: str | None,
) -> Any:
    env = {"MLOPS_PORT": str(port), "MLOPS_HOST": "127.0.0.1", "MLOPS_MODEL_ALIAS": alias}
    if follow_ref:
        env.update(
            MLOPS_MODEL_URI=follow_ref,
            MLOPS_FOLLOW_ALIAS="1",
            MLFLOW_TRACKING_URI=tracking_uri or "",
            MLOPS_FOLLOW_INTERVAL=os.environ.get("MLOPS_FOLLOW_INTERVAL", "10"),
        )
    labels = {
        ROLE: "model",
        DEPLOYMENT: name,
        f"{LABEL}.model": image.model,
        f"{LABEL}.version": image.version,
        f"{LABEL}.alias": alias,
        f"{LABEL}.run-id": image.run_id,
        f"{LABEL}.port": str(port),
        f"{LABEL}.previous-version": previous_version or "",
        f"{LABEL}.follow-alias": "true" if follow_ref else "false",
    }
    suffix = secrets.token_hex(2)
    with translate_errors():
        return client.containers.run(
            image.tags[0] if image.tags else image.id,
            name=f"mlops-{name}-v{image.version}-{suffix}",
            detach=True,
            network_mode="host",
            environment=env,
            labels=labels,
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
        )


def _start_router(
    client: Any, image: ServingImage, name: str, port: int, host: str, upstream: str, token: str
) -> Any:
    # The router's admin token sits in a label: whoever can read labels can also exec into the
    # container, so it protects the switch from the network, not from the Docker operator.
    labels = {
        ROLE: "router",
        DEPLOYMENT: name,
        f"{LABEL}.port": str(port),
        f"{LABEL}.host": host,
        f"{LABEL}.router-token": token,
    }
    env = {"MLOPS_ADMIN_TOKEN": token, "MLOPS_PORT": str(port)}
    with translate_errors():
        existing = [
            c
            for c in client.containers.list(all=True, filters={"name": f"mlops-{name}"})
            if c.name == f"mlops-{name}"
        ]
        for c in existing:
            _remove(c)
        return client.containers.run(
            image.tags[0] if image.tags else image.id,
            command=[
                "python3",
                "-m",
                "server.router",
                "--listen",
                f"{host}:{port}",
                "--upstream",
                upstream,
            ],
            name=f"mlops-{name}",
            detach=True,
            network_mode="host",
            environment=env,
            labels=labels,
            restart_policy={"Name": "unless-stopped"},
        )


def _switch(router: Any, port: int, upstream: str) -> None:
    token = router.labels.get(f"{LABEL}.router-token", "")
    try:
        response = httpx.put(
            f"http://127.0.0.1:{port}/-/router/upstream",
            json={"upstream": upstream, "drain_timeout": 30},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
    except httpx.HTTPError as exc:
        raise BackendError(
            f"could not switch the router on port {port}: {exc}", title="Switch failed"
        ) from exc
    if response.status_code != 200:
        raise BackendError(
            f"router refused the switch ({response.status_code}): {response.text}",
            title="Switch failed",
        )


def _wait_ready(container: Any, base: str, timeout: float, path: str = "/ready") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with translate_errors():
            container.reload()
        crashed = container.attrs.get("RestartCount", 0) > 0 or container.status == "restarting"
        if container.status in ("exited", "dead") or crashed:
            raise ContainerFailed(_failure_text(container, "exited on start"))
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + path, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise ContainerFailed(_failure_text(container, f"not ready after {timeout:.0f}s"))


def _failure_text(container: Any, what: str) -> str:
    try:
        logs = container.logs(tail=15).decode(errors="replace").strip()
    except Exception:
        logs = "(no logs)"
    return f"container {container.name} {what}; its last log lines:\n{logs}"


def _remove(container: Any) -> None:
    with contextlib.suppress(Exception):
        container.stop(timeout=30)  # SIGTERM: the server drains in-flight requests first
    with contextlib.suppress(Exception):
        container.remove(force=True)


def uptime(deployment: Deployment, now: datetime | None = None) -> float | None:
    """Seconds since the deployment's router started."""
    if deployment.started_at is None:
        return None
    return ((now or datetime.now(UTC)) - deployment.started_at).total_seconds()
