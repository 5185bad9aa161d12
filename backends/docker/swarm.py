"""Deployments as Docker Swarm services (a context with ``engine = "swarm"``).

A deployment NAME on a swarm is:
  - ``mlops-NAME``: the router service (``python -m server.router``, one task), pinned to the
    node whose engine we talk to, publishing the deployment's port there in ``host`` mode (not
    through the routing mesh); its admin token and routing table in the deployment's volume on
    that node, as on a single engine;
  - ``mlops-NAME-vVERSION-XXXX``: one service per model version, REPLICAS tasks spread by
    Swarm over the nodes, with the image's health check, resource limits and our labels, on the
    deployment's overlay network ``mlops-NAME``, endpoint mode ``dnsrr`` (no virtual IP).
The router reaches a version as ``http://tasks.SERVICE:8080``: Swarm's DNS names each of its
running, healthy tasks, and the router spreads requests over them and drains them itself
(server.upstreams). The routing mesh is not used for model traffic: it is known to send new
connections to tasks that are stopping during a rolling update.

A switch is the single engine's, one level up: the new version's service is created, every
replica runs healthy, the router moves to it (returning once the old service has nothing in
flight), then the old service is removed. A replica that dies is Swarm's to replace; the router
sends its requests to the others meanwhile. Labels are on the services (the tasks' containers
carry only Swarm's own), so a single-engine listing never mistakes a task for a deployment.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from backends.docker import hardening
from backends.docker.containers import DEPLOYMENT, ROLE, previous_in
from backends.docker.engine import (
    LABEL,
    engine_address,
    host_of,
    is_remote,
    log_lines,
    parse_time,
    translate_errors,
    url_on,
)
from backends.docker.engine_ports import port_free_on
from backends.docker.router_api import RouterApi
from backends.docker.switch import ContainerFailed
from backends.errors import BackendError, Conflict, InvalidInput, NotFound, Unavailable
from backends.records import Deployment, ScrapeTarget, ServingImage, version_number

__all__ = [
    "CANARY_METRICS",
    "MODEL_PORT",
    "VersionReplicas",
    "canary_services",
    "canary_state",
    "canary_targets",
    "check_manager",
    "check_service_name",
    "deploy",
    "deployment_logs",
    "get_deployment",
    "list_deployments",
    "previous_version",
    "remove_canaries",
    "remove_deployment",
    "replicas",
    "router_api",
    "scale",
    "start_canary",
]

log = logging.getLogger(__name__)
MODEL_PORT = 8080  # every task listens here, on its own address
SERVICE = "com.docker.swarm.service.name"  # the label Swarm puts on a task's container
REPLICAS = f"{LABEL}.replicas"
_FAILED = ("failed", "rejected", "orphaned")
# The image's kind of probe (bash's /dev/tcp, see the Dockerfile: a Python start every 2 s
# costs ~0.1 s of CPU), on the router's own liveness route.
_ROUTER_PROBE = (
    f"exec 3<>/dev/tcp/127.0.0.1/{MODEL_PORT} && "
    "printf 'GET /-/router/health HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && "
    "read -r -t 2 status <&3 && [[ $status == HTTP/1.?' 200 '* ]]"
)
MAX_SERVICE_NAME = 63  # Swarm's limit on a service's name (a DNS label)
DEFAULT_TIMEOUT = 180.0  # seconds a version's tasks have to run healthy (pulls included)
CANARY_METRICS = "/-/router/canary/metrics"  # the router's route for a canary's own figures


@dataclass(frozen=True)
class VersionReplicas:
    """One version's service of a deployment: its tasks running (healthy) of those desired,
    and the nodes they run on."""

    deployment: str
    service: str
    version: int | None
    running: int
    desired: int
    nodes: tuple[str, ...]
    serving: bool  # the version the router sends traffic to


def check_service_name(name: str, version: int | None) -> None:
    """InvalidInput when a version's service name would pass Swarm's 63 characters."""
    longest = f"mlops-{name}-v{version}-xxxx"
    if len(longest) > MAX_SERVICE_NAME:
        raise InvalidInput(
            f"deployment name {name!r} is too long for a swarm: its services are named "
            f"mlops-NAME-vVERSION-XXXX, at most {MAX_SERVICE_NAME} characters; choose a name of "
            f"at most {MAX_SERVICE_NAME - len(longest) + len(name)} with --name"
        )


def check_manager(client: Any) -> None:
    """Unavailable (exit 3) unless the engine is a manager of an active swarm."""
    with translate_errors():
        swarm = client.info().get("Swarm") or {}
    state = swarm.get("LocalNodeState") or "inactive"
    if state != "active" or not swarm.get("ControlAvailable"):
        role = "a worker of a swarm" if state == "active" else f"not in a swarm ({state})"
        try:
            where = engine_address()
        except BackendError:  # the client is connected: whatever it was told, it answered
            where = str(client.api.base_url)
        raise Unavailable(
            f"the Docker engine at {where} is {role}; a swarm context needs a "
            "manager: run `docker swarm init` there (or `docker swarm join` it as a manager), "
            'or set engine = "docker" in the context',
            title="Not a swarm manager",
        )


# ---------------------------------------------------------------------- reading


def list_deployments(client: Any) -> list[Deployment]:
    """Every deployment on the swarm with the version its router serves."""
    check_manager(client)
    with translate_errors():
        routers = client.services.list(filters={"label": f"{ROLE}=router"})
        models = client.services.list(filters={"label": f"{ROLE}=model"})
        tasks = _running_tasks(client)
    by_name = _by_deployment(models)
    remote = host_of(client) if is_remote(client) else ""
    found = [
        _record(r, by_name.get(_labels(r).get(DEPLOYMENT, ""), []), tasks, remote)
        for r in routers
        if _labels(r).get(DEPLOYMENT)
    ]
    return sorted(found, key=lambda d: d.name)


def get_deployment(client: Any, name: str) -> Deployment:
    for d in list_deployments(client):
        if d.name == name:
            return d
    raise _not_found(name)


def replicas(client: Any, name: str | None = None) -> list[VersionReplicas]:
    """Each version service's replicas (of deployment ``name``, or of all), with their nodes."""
    check_manager(client)
    with translate_errors():
        routers = client.services.list(filters={"label": f"{ROLE}=router"})
        models = client.services.list(filters={"label": f"{ROLE}=model"})
        tasks = _running_tasks(client)
        nodes = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
    # What each deployment's router serves: its newest version service (as list_deployments).
    by_name = _by_deployment(models)
    serving = {_newest(by_name.get(_labels(r).get(DEPLOYMENT, ""), [])) for r in routers}
    rows = []
    for m in models:
        labels = _labels(m)
        deployment = labels.get(DEPLOYMENT, "")
        if name is not None and deployment != name:
            continue
        mine = [t for t in tasks if t["ServiceID"] == m.id]
        rows.append(
            VersionReplicas(
                deployment=deployment,
                service=m.name,
                version=version_number(labels.get(f"{LABEL}.version")),
                running=len(mine),
                desired=_desired(m),
                nodes=tuple(sorted(nodes.get(t.get("NodeID", ""), "?") for t in mine)),
                serving=m in serving,
            )
        )
    return sorted(rows, key=lambda r: (r.deployment, -(r.version or 0)))


def deployment_logs(
    client: Any, name: str, *, follow: bool = False, tail: int = 100
) -> Iterator[str]:
    """The serving version's service log, every task's lines (``follow`` streams), each
    prefixed as ``docker service logs`` does: ``SERVICE.SLOT@NODE | line``."""
    serving = _serving_model(client, name)
    if serving is None:
        raise _not_found(name)
    with translate_errors():
        tasks: dict[str, str] = {}
        stream = client.api.service_logs(
            serving.id,
            stdout=True,
            stderr=True,
            follow=follow,
            tail=tail,
            timestamps=False,
            details=True,  # each line says its task and node: ``k=v,k=v message``
        )
        for line in log_lines(stream):
            details, _, message = line.partition(" ")
            attrs = dict(kv.split("=", 1) for kv in details.split(",") if "=" in kv)
            task = attrs.get("com.docker.swarm.task.id")
            if task is None:
                yield line
                continue
            if task not in tasks:  # a task started since: the table again, once per task
                tasks = {**tasks, **_task_names(client, serving)}
                tasks.setdefault(task, f"{serving.name}.{task[:12]}")
            yield f"{tasks[task]} | {message}"


def _task_names(client: Any, service: Any) -> dict[str, str]:
    """``SERVICE.SLOT@NODE`` of each of ``service``'s tasks, by task id."""
    nodes = {
        n.id: n.attrs.get("Description", {}).get("Hostname", n.id[:12]) for n in client.nodes.list()
    }
    return {
        t["ID"]: f"{service.name}.{t.get('Slot', '?')}@{nodes.get(t.get('NodeID', ''), '?')}"
        for t in client.api.tasks(filters={"service": service.id})
    }


def previous_version(client: Any, name: str) -> int:
    """The version the serving one replaced (what `deploy rollback` goes back to)."""
    serving = _serving_model(client, name)
    if serving is None:
        raise _not_found(name)
    return previous_in(name, _labels(serving))


# ---------------------------------------------------------------------- changing


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
    env: dict[str, str] | None = None,
    replicas: int | None = None,
    pinned: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[Deployment, int | None]:
    """Run ``image`` as deployment ``name`` on the swarm, ``replicas`` tasks (default: as many
    as the version it replaces had, else 1); an existing deployment is switched with no failed
    request. ``pinned``: the image by its registry digest (every node pulls it), else the
    engine's local tag (a single node). Returns the deployment and the version it replaced
    (None for a new one)."""
    del tracking_uri  # a follow-alias service is refused below; the argument is the engine's
    if follow_alias_ref:
        raise InvalidInput(
            "following an alias is not supported on a swarm context yet: deploy the version "
            "(NAME@ALIAS without --follow-alias pins it)",
            title="Cannot follow",
        )
    if replicas is not None and not 1 <= replicas <= 100:
        raise InvalidInput(f"replicas must be from 1 to 100, not {replicas}")
    check_manager(client)
    check_service_name(name, image.version)
    router = _router(client, name)
    fresh = router is None  # a new deployment: on failure nothing of it stays
    previous = _serving_model(client, name) if router is not None else None
    if router is None and not port_free_on(client, port):
        raise Conflict(f"port {port} is already in use on this node; choose another with --port")
    count = replicas or (max(1, _desired(previous)) if previous is not None else 1)
    network = _network(client, name)
    replaced = version_number(_labels(previous).get(f"{LABEL}.version")) if previous else None
    # The version it goes back to: the one replaced, unless that is this very version again.
    back_to = replaced
    if previous is not None and replaced == image.version:
        back_to = version_number(_labels(previous).get(f"{LABEL}.previous-version"))
    ref = pinned or image.ref
    new = _create_model(client, image, ref, name, network, count, back_to, alias, env or {})
    try:
        _wait_running(client, new, count, timeout)
        upstream = f"http://tasks.{new.name}:{MODEL_PORT}"
        if router is None:
            router = _create_router(client, image, ref, name, network, port, host, upstream)
            _wait_http(f"{url_on(client, port)}/-/router/health", router, client, timeout)
        else:
            _switch(client, router, port, upstream, str(image.version or ""), timeout)
    except BaseException:
        if fresh:
            if router is not None:
                _remove_service(router)
            _remove_service(new)
            _remove_leftovers(client, name, [s.id for s in (router, new) if s is not None])
        elif not _serves(client, router, port, new.name):
            _remove_service(new)  # the router still sends traffic to the old one
        raise
    for stale in _model_services(client, name):
        if stale.id != new.id:
            _remove_service(stale)
    return get_deployment(client, name), replaced


def scale(client: Any, name: str, count: int, timeout: float = 180.0) -> VersionReplicas:
    """Run ``count`` tasks of the version deployment ``name`` serves; returns once that many
    run healthy (the router spreads requests over them as Swarm's DNS lists them)."""
    if not 1 <= count <= 100:
        raise InvalidInput(f"replicas must be from 1 to 100, not {count}")
    check_manager(client)
    serving = _serving_model(client, name)
    if serving is None:
        raise _not_found(name)
    with translate_errors():
        serving.scale(count)
    _wait_running(client, serving, count, timeout)
    return next(r for r in replicas(client, name) if r.service == serving.name)


def remove_deployment(client: Any, name: str) -> list[str]:
    """Remove the router service (it drains first) and every version service of ``name``."""
    check_manager(client)
    router = _router(client, name)
    models = _model_services(client, name) + canary_services(client, name)
    if router is None and not models:
        raise _not_found(name)
    removed = []
    for service in ([router] if router is not None else []) + models:
        removed.append(service.name)
        _remove_service(service)
    _remove_leftovers(client, name, [s.id for s in ([router] if router else []) + models])
    return removed


def _remove_leftovers(client: Any, name: str, service_ids: list[str]) -> None:
    """The deployment's network and volume, once the tasks of its services and their
    containers are gone (a stopping router's container still holds the volume)."""
    _wait_gone(client, service_ids, name)
    with contextlib.suppress(Exception):
        client.networks.get(f"mlops-{name}").remove()
    with contextlib.suppress(Exception):
        client.volumes.get(f"mlops-{name}-state").remove(force=True)


def _serves(client: Any, router: Any, port: int, service: str) -> bool:
    """Whether the router sends traffic to ``service`` (after a switch that failed midway);
    when it cannot be asked, True: the service is left rather than pulled from under it."""
    try:
        token = hardening.read_token(_router_task(client, router))
        answer = httpx.get(
            f"{url_on(client, port)}/-/router/upstream",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        return f"tasks.{service}:" in str(answer.json().get("upstream", ""))
    except Exception:
        return True


# ---------------------------------------------------------------------- canary


def start_canary(
    client: Any,
    image: ServingImage,
    name: str,
    *,
    alias: str = "",
    pinned: str | None = None,
    shadow: bool = False,
    timeout: float = 180.0,
) -> tuple[Any, str]:
    """A canary service of ``image`` beside deployment ``name``'s serving version, with as
    many tasks (its share of the traffic never crowds fewer), on the deployment's network,
    every task running healthy; returns it and the router's upstream for it
    (``http://tasks.SERVICE:8080``). One whose tasks never run is removed and ContainerFailed
    says why; nothing of the deployment is touched. ``shadow``: it only answers the router's
    copies (labelled so: it is no scrape target of the deployment's traffic)."""
    check_manager(client)
    serving = _serving_model(client, name)
    if serving is None:
        raise _not_found(name)
    check_service_name(f"{name}-canary", image.version)
    count = max(1, _desired(serving))
    serving_version = version_number(_labels(serving).get(f"{LABEL}.version"))
    network = _network(client, name)
    service = _create_model(
        client,
        image,
        pinned or image.ref,
        name,
        network,
        count,
        serving_version,
        alias,
        {},
        role="canary",
        shadow=shadow,
    )
    try:
        _wait_running(client, service, count, timeout)
    except BaseException:
        _remove_service(service)
        raise
    return service, f"http://tasks.{service.name}:{MODEL_PORT}"


def canary_services(client: Any, name: str) -> list[Any]:
    """The canary service(s) of deployment ``name`` (one while a canary release runs)."""
    with translate_errors():
        return list(
            client.services.list(filters={"label": [f"{ROLE}=canary", f"{DEPLOYMENT}={name}"]})
        )


def canary_state(client: Any, name: str, service_name: str) -> str:
    """How canary service ``service_name`` is gone ("has no running task", "is missing"),
    or "" while a task of it runs. A task Swarm is replacing counts as gone only when none
    is left: the router sends the canary's share to the others meanwhile."""
    found = [s for s in canary_services(client, name) if s.name == service_name]
    if not found:
        return "is missing"
    running = [t for t in _running_tasks(client) if t["ServiceID"] == found[0].id]
    return "" if running else "has no running task"


def remove_canaries(client: Any, name: str) -> list[str]:
    """Remove deployment ``name``'s canary services (their tasks drain on SIGTERM)."""
    removed = []
    for service in canary_services(client, name):
        removed.append(service.name)
        _remove_service(service)
    return removed


def router_api(client: Any, name: str) -> RouterApi:
    """The admin API of deployment ``name``'s router service: at its published port on the
    node we talk to, with the token from its task's volume (NotFound without one)."""
    router = _router(client, name)
    if router is None:
        raise _not_found(name)
    port = _labels(router).get(f"{LABEL}.port", "")
    return RouterApi(_router_task(client, router), base=url_on(client, port))


def canary_targets(client: Any) -> list[ScrapeTarget]:
    """Each running canary service as a scrape target: its tasks' /metrics together, through
    its deployment's router (``/-/router/canary/metrics``: the overlay is not reachable from
    here), labelled with its deployment, model and version, ``role`` canary."""
    with translate_errors():
        found = client.services.list(filters={"label": f"{ROLE}=canary"})
        routers = {
            _labels(r).get(DEPLOYMENT, ""): _labels(r).get(f"{LABEL}.port", "")
            for r in client.services.list(filters={"label": f"{ROLE}=router"})
        }
    targets = []
    for service in found:
        labels = _labels(service)
        deployment = labels.get(DEPLOYMENT, "")
        port = routers.get(deployment, "")
        if not port.isdigit() or labels.get(f"{LABEL}.shadow") == "true":
            continue  # a shadow answers the router's copies only: not the deployment's traffic
        targets.append(
            ScrapeTarget(
                url=url_on(client, port),
                deployment=deployment,
                model=labels.get(f"{LABEL}.model", ""),
                version=version_number(labels.get(f"{LABEL}.version")),
                role="canary",
                metrics_path=CANARY_METRICS,
            )
        )
    return sorted(targets, key=lambda t: (t.deployment, t.url))


# ---------------------------------------------------------------------- helpers


def _not_found(name: str) -> NotFound:
    return NotFound(f"no deployment named {name!r} on the swarm (see `mlops deploy ps`)")


def _labels(service: Any) -> dict[str, str]:
    return dict(service.attrs.get("Spec", {}).get("Labels") or {})


def _desired(service: Any) -> int:
    return int(service.attrs["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 1))


def _running_tasks(client: Any) -> list[dict[str, Any]]:
    """Every task that is running now (with a health check: healthy), any service."""
    tasks = client.api.tasks(filters={"desired-state": "running"})
    return [t for t in tasks if t.get("Status", {}).get("State") == "running"]


def _router(client: Any, name: str) -> Any | None:
    with translate_errors():
        found = client.services.list(filters={"label": [f"{ROLE}=router", f"{DEPLOYMENT}={name}"]})
    return found[0] if found else None


def _model_services(client: Any, name: str) -> list[Any]:
    with translate_errors():
        return list(
            client.services.list(filters={"label": [f"{ROLE}=model", f"{DEPLOYMENT}={name}"]})
        )


def _serving_model(client: Any, name: str) -> Any | None:
    """The version service the router sends traffic to: the newest (a switch removes the
    others once the router has moved)."""
    return _newest(_model_services(client, name))


def _by_deployment(services: list[Any]) -> dict[str, list[Any]]:
    by_name: dict[str, list[Any]] = {}
    for service in services:
        by_name.setdefault(_labels(service).get(DEPLOYMENT, ""), []).append(service)
    return by_name


def _newest(services: list[Any]) -> Any | None:
    return max(services, key=lambda s: s.attrs.get("CreatedAt", "")) if services else None


def _record(
    router: Any, models: list[Any], tasks: list[dict[str, Any]], engine_host: str = ""
) -> Deployment:
    labels = _labels(router)
    serving = _newest(models)
    ml = _labels(serving) if serving is not None else {}
    running = sum(1 for t in tasks if serving is not None and t["ServiceID"] == serving.id)
    desired = _desired(serving) if serving is not None else 0
    router_up = any(t["ServiceID"] == router.id for t in tasks)
    if not router_up:
        state, health = "starting", "none"
    elif running == 0:
        state, health = "running", "unhealthy"
    else:
        state, health = "running", "healthy" if running >= desired else "degraded"
    image = serving.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] if serving else ""
    port = labels.get(f"{LABEL}.port", "")
    return Deployment(
        name=labels.get(DEPLOYMENT, router.name),
        model=ml.get(f"{LABEL}.model", ""),
        version=version_number(ml.get(f"{LABEL}.version")),
        alias=ml.get(f"{LABEL}.alias", ""),
        run_id=ml.get(f"{LABEL}.run-id", ""),
        image=ml.get(f"{LABEL}.image") or image.split("@")[0],
        container_id=serving.short_id if serving is not None else "",
        state=state,
        health=health,
        host=labels.get(f"{LABEL}.host", "127.0.0.1"),
        port=int(port) if port.isdigit() else None,
        started_at=parse_time(router.attrs.get("CreatedAt", "")),
        follow_alias=False,
        store=ml.get(f"{LABEL}.store", ""),
        engine_host=engine_host,
    )


def _network(client: Any, name: str) -> str:
    """The deployment's overlay network (created once; removed with the deployment)."""
    network = f"mlops-{name}"
    with translate_errors():
        # The name filter matches parts of names (mlops-iris-2 for mlops-iris): compare.
        if not any(n.name == network for n in client.networks.list(names=[network])):
            client.networks.create(
                network,
                driver="overlay",
                attachable=False,
                labels={DEPLOYMENT: name},
            )
    return network


def _create_model(
    client: Any,
    image: ServingImage,
    ref: str,
    name: str,
    network: str,
    count: int,
    previous_version: int | None,
    alias: str,
    env: dict[str, str],
    role: str = "model",
    shadow: bool = False,
) -> Any:
    from docker.types import EndpointSpec, RestartPolicy, ServiceMode

    labels = {
        ROLE: role,
        DEPLOYMENT: name,
        f"{LABEL}.model": image.model,
        f"{LABEL}.version": str(image.version or ""),
        f"{LABEL}.alias": alias,
        f"{LABEL}.run-id": image.run_id,
        f"{LABEL}.store": image.store,
        f"{LABEL}.previous-version": str(previous_version or ""),
        # The engine's own tag of the image (the service may run it by a registry digest):
        # what this host builds, locks and lists it by.
        f"{LABEL}.image": image.ref,
        **({f"{LABEL}.shadow": "true"} if shadow else {}),
    }
    environment = {
        **env,
        # On the overlay network only: nothing of a model service is published.
        "MLOPS_HOST": "0.0.0.0",
        "MLOPS_PORT": str(MODEL_PORT),
        "MLOPS_MODEL_ALIAS": alias,
    }
    kind = "canary-" if role == "canary" else ""
    service_name = f"mlops-{name}-v{image.version}-{kind}{secrets.token_hex(2)}"
    with translate_errors():
        return client.services.create(
            ref,
            name=service_name,
            env=[f"{k}={v}" for k, v in environment.items()],
            labels=labels,
            container_labels={f"{LABEL}.swarm-deployment": name},
            networks=[network],
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            mode=ServiceMode("replicated", replicas=count),
            resources=_resources(),
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
            read_only=True,
            cap_drop=["ALL"],
            mounts=[_tmp()],
            **_logging(),
            stop_grace_period=hardening.STOP_TIMEOUT * 1_000_000_000,
        )


def _create_router(
    client: Any,
    image: ServingImage,
    ref: str,
    name: str,
    network: str,
    port: int,
    host: str,
    upstream: str,
) -> Any:
    """The router service, on the node we talk to (its volume, with the admin token and the
    routing table, is there), publishing ``port`` on that node."""
    from docker.types import EndpointSpec, Healthcheck, Mount, RestartPolicy

    with translate_errors():
        node = client.info()["Swarm"]["NodeID"]
    volume = hardening.state_volume(client, name)
    _seed_state(client, image.ref, name, volume)
    command = ["python3", "-m", "server.router", "--listen", f"0.0.0.0:{MODEL_PORT}"]
    command += ["--upstream", upstream, "--state-dir", hardening.STATE_DIR]
    # Its admin requests come from the node's own address through the published port, never
    # from loopback inside the task: the token (in its volume) is what guards them.
    command += ["--version", str(image.version or ""), "--remote-admin"]
    labels = {
        ROLE: "router",
        DEPLOYMENT: name,
        f"{LABEL}.port": str(port),
        f"{LABEL}.host": host,
    }
    with translate_errors():
        return client.services.create(
            ref,
            command=command,
            name=f"mlops-{name}",
            env=[f"MLOPS_ADMIN_TOKEN_FILE={hardening.TOKEN_FILE}", f"MLOPS_PORT={MODEL_PORT}"],
            labels=labels,
            container_labels={f"{LABEL}.swarm-deployment": name},
            networks=[network],
            endpoint_spec=EndpointSpec(ports={port: (MODEL_PORT, "tcp", "host")}),
            constraints=[f"node.id == {node}"],
            # Its own liveness, not the image's /ready (which the router would forward to a
            # model task: Swarm would restart the router whenever the models are down).
            healthcheck=Healthcheck(
                test=["CMD", "bash", "-c", _ROUTER_PROBE],
                interval=2_000_000_000,
                timeout=2_000_000_000,
                retries=3,
                start_period=30_000_000_000,
            ),
            resources=_resources(),
            restart_policy=RestartPolicy(condition="any", delay=1_000_000_000),
            read_only=True,
            cap_drop=["ALL"],
            mounts=[
                Mount(hardening.STATE_MOUNT, volume, type="volume"),
                _tmp(),
            ],
            **_logging(),
            stop_grace_period=hardening.STOP_TIMEOUT * 1_000_000_000,
        )


def _seed_state(client: Any, image: str, name: str, volume: str) -> None:
    """The admin token into the deployment's volume before the router's task mounts it: a
    container that is created, given the files and removed, never started."""
    seed = hardening.create(
        client,
        image,
        f"mlops-{name}-seed-{secrets.token_hex(2)}",
        command=["true"],
        environment={},
        labels={},
        volumes={volume: hardening.STATE_MOUNT},
    )
    try:
        hardening.write_state(seed, hardening.new_token())
    finally:
        with contextlib.suppress(Exception):
            seed.remove(force=True)


def _router_task(client: Any, router: Any) -> Any:
    """The container of the router's task (on our node: it is pinned there)."""
    with translate_errors():
        found = client.containers.list(
            filters={"label": f"{SERVICE}={router.name}"}, ignore_removed=True
        )
    if not found:
        raise Unavailable(
            f"the router of {router.name} has no running task on this node (Swarm restarts "
            "it: try again in a moment)",
            title="Router not running",
        )
    return found[0]


def _switch(
    client: Any, router: Any, port: int, upstream: str, version: str, timeout: float
) -> None:
    """Move the router to ``upstream``; it answers once the old service has nothing in
    flight. Swarm's DNS may list the new tasks a moment after they run: the router says so
    (409) and it is asked again."""
    token = hardening.read_token(_router_task(client, router))
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.put(
                f"{url_on(client, port)}/-/router/upstream",
                json={"upstream": upstream, "version": version, "drain_timeout": 30},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                f"could not switch the router on port {port}: {exc}", title="Switch failed"
            ) from exc
        if response.status_code == 409 and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        if response.status_code != 200:
            raise BackendError(
                f"router refused the switch ({response.status_code}): {response.text}",
                title="Switch failed",
            )
        if response.json().get("drained") is False:
            # The old service still had requests after the drain timeout: it is removed all
            # the same (its tasks get SIGTERM and drain those themselves, 25 s).
            log.warning("%s: the old version had requests in flight after 30 s", router.name)
        return


def _wait_running(client: Any, service: Any, count: int, timeout: float) -> None:
    """Until ``count`` tasks of ``service`` run healthy; ContainerFailed with the tasks'
    errors and the service's last log lines when they keep failing or time runs out."""
    deadline = time.monotonic() + timeout
    with translate_errors():
        # Failures before this wait (a long-lived service's history) are not this change's.
        earlier = {t["ID"] for t in client.api.tasks(filters={"service": service.id})}
    while True:
        with translate_errors():
            tasks = client.api.tasks(filters={"service": service.id})
        states = Counter(t.get("Status", {}).get("State", "") for t in tasks)
        running = sum(
            1
            for t in tasks
            if t.get("DesiredState") == "running" and t["Status"].get("State") == "running"
        )
        if running >= count:
            return
        failures = [
            t
            for t in tasks
            if t.get("Status", {}).get("State") in _FAILED and t["ID"] not in earlier
        ]
        if len(failures) >= 2 * count + 1 or time.monotonic() > deadline:
            what = (
                f"kept failing ({len(failures)} tasks failed)"
                if len(failures) >= 2 * count + 1
                else f"has {running} of {count} replicas running after {timeout:.0f}s"
            )
            raise ContainerFailed(_failure_text(client, service, what, failures, states, tasks))
        time.sleep(0.5)


def _failure_text(
    client: Any,
    service: Any,
    what: str,
    failures: list[dict[str, Any]],
    states: Counter[str],
    tasks: list[dict[str, Any]] | None = None,
) -> str:
    errors = sorted({t["Status"].get("Err", "") for t in failures if t["Status"].get("Err")})
    nodes = _nodes(client)
    failed_on = sorted({_node_name(nodes, t["NodeID"]) for t in failures if t.get("NodeID")})
    # Tasks still on their way where time ran out: a node that stopped answering keeps its
    # tasks "assigned" or "starting" until Swarm marks it down, so they name it sooner.
    stalled = Counter(
        f"{_node_name(nodes, t['NodeID'])} [{t.get('Status', {}).get('State', '?')}]"
        for t in tasks or []
        if t.get("NodeID")
        and t.get("DesiredState") == "running"
        and t.get("Status", {}).get("State") not in ("running", *_FAILED)
    )
    try:
        raw = client.api.service_logs(service.id, stdout=True, stderr=True, tail=15)
        logs = b"".join(raw).decode(errors="replace").strip() or "(no logs)"
    except Exception:
        logs = "(no logs)"
    where = f" on node(s) {', '.join(failed_on)}" if failed_on else ""
    if stalled:
        waiting = ", ".join(f"{n} on {node}" for node, n in sorted(stalled.items()))
        where += f"; not running yet: {waiting}"
    # A node that went away takes its tasks with it: said by name, whatever the tasks say.
    lost = sorted(
        _node_name(nodes, node_id)
        for node_id, node in nodes.items()
        if node.get("Status", {}).get("State") not in ("ready", None)
    )
    gone = f"; node(s) not ready: {', '.join(lost)}" if lost else ""
    return (
        f"service {service.name} {what}{where}{gone}; task states: {dict(states)}; "
        f"errors: {'; '.join(errors) or 'none'}; its last log lines:\n{logs}"
    )


def _nodes(client: Any) -> dict[str, dict[str, Any]]:
    """The swarm's nodes by ID (nothing when the engine does not answer: the text is a
    failure's explanation, never a second failure)."""
    try:
        return {n["ID"]: n for n in client.api.nodes()}
    except Exception:
        return {}


def _node_name(nodes: dict[str, dict[str, Any]], node_id: str) -> str:
    node = nodes.get(node_id)
    if node is None:
        return node_id[:12]
    name = str(node.get("Description", {}).get("Hostname") or node_id[:12])
    state = node.get("Status", {}).get("State")
    return name if state == "ready" else f"{name} ({state})"


def _wait_http(url: str, service: Any, client: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise ContainerFailed(_failure_text(client, service, f"not answering at {url}", [], Counter()))


def _remove_service(service: Any) -> None:
    """Remove a service: Swarm stops its tasks with SIGTERM (they drain) then removes them."""
    with contextlib.suppress(Exception):
        service.remove()


def _wait_gone(client: Any, service_ids: list[str], name: str, timeout: float = 90) -> None:
    """Until no task of the removed services is left, nor a container of the deployment's
    (Swarm forgets a task before its container has stopped: the drain takes up to 30 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with translate_errors():
            left = [t for t in client.api.tasks() if t.get("ServiceID") in service_ids]
            left += client.containers.list(
                all=True,
                filters={"label": f"{LABEL}.swarm-deployment={name}"},
                ignore_removed=True,  # one removed between the listing and its inspection
            )
        if not left:
            return
        time.sleep(0.5)


def _resources() -> Any:
    """A single engine's limits: memory, and processes (``Limits.Pids``, Engine API 1.41,
    which docker-py's ``Resources`` does not spell)."""
    from docker.types import Resources

    resources = Resources(mem_limit=_bytes(hardening.memory_limit()))
    resources["Limits"]["Pids"] = max(hardening.pids_limit(), 0)  # a container's -1: Swarm's 0
    return resources


def _tmp() -> Any:
    from docker.types import Mount

    return Mount("/tmp", None, type="tmpfs", tmpfs_size=256 * 1024**2)


def _logging() -> dict[str, Any]:
    """The tasks' logs rotated as a single engine's containers' are."""
    config = hardening.log_config()
    return {"log_driver": config["type"], "log_driver_options": config["config"]}


def _bytes(text: str) -> int:
    """``2g``, ``512m``, ``1073741824`` as bytes (Docker's spelling of a memory limit)."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)
