"""Deployments as containers on the engine: reading them back, their logs, removing them.

A deployment NAME is two kinds of container, all on the host's network and bound to loopback
unless asked otherwise (so nothing is published through Docker's proxy and every address is
127.0.0.1):
  - ``mlops-NAME``: the router (``python -m server.router``) on the deployment's port, the
    address clients use;
  - ``mlops-NAME-vVERSION-XXXX``: the model server for one version, on a private free port.
Labels say what each is (``org.mlops-console.role``, ``.deployment``, ``.model``, ``.version``,
``.run-id``, ``.store``, ``.alias``); switching between versions is ``backends.docker.switch``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from backends.docker.engine import (
    LABEL,
    host_of,
    is_remote,
    log_lines,
    parse_time,
    translate_errors,
    url_on,
)
from backends.errors import BackendError, NotFound
from backends.records import Deployment, ScrapeTarget, version_number

__all__ = [
    "DEPLOYMENT",
    "ROLE",
    "active_model",
    "canary_containers",
    "canary_targets",
    "deployment_logs",
    "get_deployment",
    "list_deployments",
    "model_containers",
    "previous_in",
    "previous_version",
    "remove_container",
    "remove_deployment",
    "router_of",
    "uptime",
]

ROLE = f"{LABEL}.role"
DEPLOYMENT = f"{LABEL}.deployment"


def list_deployments(client: Any) -> list[Deployment]:
    """Every deployment with the version its router currently serves."""
    # ignore_removed: the SDK lists, then inspects each container; one removed in between (by
    # another deploy or test) is gone, not an error of the whole listing.
    with translate_errors():
        routers = client.containers.list(
            all=True, filters={"label": f"{ROLE}=router"}, ignore_removed=True
        )
        models = client.containers.list(
            all=True, filters={"label": f"{ROLE}=model"}, ignore_removed=True
        )
    by_name: dict[str, list[Any]] = {}
    for c in models:
        by_name.setdefault(c.labels.get(DEPLOYMENT, ""), []).append(c)
    remote = host_of(client) if is_remote(client) else ""
    found = [_record(r, by_name.get(r.labels.get(DEPLOYMENT, ""), []), remote) for r in routers]
    return sorted(_serving_now(found), key=lambda d: d.name)


def _serving_now(deployments: list[Deployment]) -> list[Deployment]:
    """A deployment that follows an alias reloads in place: its label says the version it
    started with, its server says the one it serves now (asked, briefly; the label if silent)."""
    followers = [d for d in deployments if d.follow_alias and d.state == "running" and d.url]
    if not followers:
        return deployments

    def asked(d: Deployment) -> Deployment:
        try:
            info = httpx.get(f"{d.url}/version", timeout=1.0).json()
        except (httpx.HTTPError, ValueError):
            return d
        return replace(d, version=version_number(info.get("version")) or d.version)

    with ThreadPoolExecutor(min(8, len(followers))) as pool:
        live = {d.name: n for d, n in zip(followers, pool.map(asked, followers), strict=True)}
    return [live.get(d.name, d) for d in deployments]


def get_deployment(client: Any, name: str) -> Deployment:
    """One deployment (NotFound names `mlops deploy ps`)."""
    for d in list_deployments(client):
        if d.name == name:
            return d
    raise NotFound(f"no deployment named {name!r} (see `mlops deploy ps`)")


def _record(router: Any, models: list[Any], engine_host: str = "") -> Deployment:
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
        version=version_number(ml.get(f"{LABEL}.version")),
        alias=ml.get(f"{LABEL}.alias", ""),
        run_id=ml.get(f"{LABEL}.run-id", ""),
        image=(active.image.tags[0] if active is not None and active.image.tags else ""),
        container_id=active.short_id if active is not None else "",
        state=state if active is None or active.status == "running" else active.status,
        health=health,
        host=labels.get(f"{LABEL}.host", "127.0.0.1"),
        port=int(port) if port else None,
        started_at=parse_time(router.attrs.get("State", {}).get("StartedAt", "")),
        follow_alias=ml.get(f"{LABEL}.follow-alias") == "true",
        store=ml.get(f"{LABEL}.store", ""),
        engine_host=engine_host,
    )


def _newest(containers: list[Any]) -> Any | None:
    if not containers:
        return None
    return max(containers, key=lambda c: c.attrs.get("Created", ""))


def _health(container: Any) -> str:
    state = container.attrs.get("State", {})
    return str(state.get("Health", {}).get("Status", "none"))


def model_containers(client: Any, name: str) -> list[Any]:
    """Every model container of deployment ``name`` (running or not)."""
    with translate_errors():
        return list(
            client.containers.list(
                all=True,
                filters={"label": [f"{ROLE}=model", f"{DEPLOYMENT}={name}"]},
                ignore_removed=True,
            )
        )


def canary_containers(client: Any, name: str) -> list[Any]:
    """The canary container(s) of deployment ``name`` (one while a canary release runs)."""
    with translate_errors():
        return list(
            client.containers.list(
                all=True,
                filters={"label": [f"{ROLE}=canary", f"{DEPLOYMENT}={name}"]},
                ignore_removed=True,
            )
        )


def canary_targets(client: Any) -> list[ScrapeTarget]:
    """Every running canary container of a canary release as a scrape target on its loopback
    port, labelled with its deployment, model and version, ``role`` canary and no alias (the
    alias names the stable version while a canary runs). A shadow is not one: it answers only
    the router's copies, which are not the deployment's traffic (the router reports them)."""
    with translate_errors():
        found = client.containers.list(filters={"label": f"{ROLE}=canary"}, ignore_removed=True)
    targets = []
    for c in found:
        port = c.labels.get(f"{LABEL}.port", "")
        shadow = c.labels.get(f"{LABEL}.shadow") == "true"
        if c.status != "running" or not port.isdigit() or shadow:
            continue
        targets.append(
            ScrapeTarget(
                url=url_on(client, port),
                deployment=c.labels.get(DEPLOYMENT, ""),
                model=c.labels.get(f"{LABEL}.model", ""),
                version=version_number(c.labels.get(f"{LABEL}.version")),
                role="canary",
            )
        )
    return sorted(targets, key=lambda t: (t.deployment, t.url))


def router_of(client: Any, name: str) -> Any | None:
    """The router container of deployment ``name``, if there is one."""
    with translate_errors():
        found = client.containers.list(
            all=True,
            filters={"label": [f"{ROLE}=router", f"{DEPLOYMENT}={name}"]},
            ignore_removed=True,
        )
    return found[0] if found else None


def active_model(client: Any, name: str) -> Any | None:
    """The model container that serves deployment ``name`` now (the newest running one)."""
    containers = model_containers(client, name)
    running = [c for c in containers if c.status == "running"]
    return _newest(running or containers)


def copy_prediction_log(client: Any, name: str, into: Path) -> int:
    """Copy the prediction log of deployment ``name`` (its volume, through the container that
    serves it now) into ``into``; the number of files. NotFound without such a container."""
    import tarfile
    import tempfile

    from backends.docker.hardening import LOG_MOUNT

    container = active_model(client, name)
    if container is None:
        raise NotFound(f"no model container of deployment {name!r} to read its prediction log")
    into.mkdir(parents=True, exist_ok=True)
    copied = 0
    with translate_errors(), tempfile.TemporaryFile() as buffer:
        stream, _ = container.get_archive(LOG_MOUNT)
        for chunk in stream:
            buffer.write(chunk)
        buffer.seek(0)
        with tarfile.open(fileobj=buffer) as tar:
            for member in tar.getmembers():
                base = Path(member.name).name
                if not member.isfile() or not base.endswith(".jsonl"):
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                (into / base).write_bytes(source.read())  # by its base name: nothing escapes
                copied += 1
    return copied


def previous_version(client: Any, name: str) -> int:
    """The version the current one replaced (what `deploy rollback` goes back to)."""
    active = active_model(client, name)
    if active is None:
        raise NotFound(f"no deployment named {name!r} (see `mlops deploy ps`)")
    return previous_in(name, active.labels)


def previous_in(name: str, labels: dict[str, str]) -> int:
    """The version a serving container's (or a swarm service's) labels say it replaced;
    BackendError when it replaced none (never switched, or redeployed over itself)."""
    previous = version_number(labels.get(f"{LABEL}.previous-version", ""))
    current = version_number(labels.get(f"{LABEL}.version", ""))
    if previous is None or previous == current:
        raise BackendError(
            f"deployment {name!r} has no earlier version to roll back to"
            + (f" (it serves v{current} and was never switched)" if current else ""),
            title="Nothing to roll back to",
        )
    return previous


def remove_deployment(client: Any, name: str) -> list[str]:
    """Stop and remove the router and every model container of ``name``."""
    router = router_of(client, name)
    models = model_containers(client, name) + canary_containers(client, name)
    if router is None and not models:
        raise NotFound(f"no deployment named {name!r} (see `mlops deploy ps`)")
    removed = []
    for c in ([router] if router is not None else []) + models:
        removed.append(c.name)
        remove_container(c)
    for volume in ("state", "credentials"):  # its token, upstream and credentials go with it
        with contextlib.suppress(Exception):
            client.volumes.get(f"mlops-{name}-{volume}").remove(force=True)
    return removed


def deployment_logs(
    client: Any, name: str, *, follow: bool = False, tail: int = 100
) -> Iterator[str]:
    """The active model container's log lines (``follow`` streams until interrupted)."""
    active = active_model(client, name)
    if active is None:
        raise NotFound(f"no deployment named {name!r} (see `mlops deploy ps`)")
    with translate_errors():
        if not follow:
            yield from active.logs(tail=tail).decode(errors="replace").splitlines()
            return
        yield from log_lines(active.logs(stream=True, follow=True, tail=tail))


def remove_container(container: Any, stop_timeout: int = 30) -> None:
    """Stop (SIGTERM: the server drains in-flight requests first), then remove."""
    with contextlib.suppress(Exception):
        container.stop(timeout=stop_timeout)
    with contextlib.suppress(Exception):
        container.remove(force=True)


def uptime(deployment: Deployment, now: datetime | None = None) -> float | None:
    """Seconds since the deployment's router started."""
    if deployment.started_at is None:
        return None
    return ((now or datetime.now(UTC)) - deployment.started_at).total_seconds()
