"""Where a context's deployments live: containers on one Docker engine (``docker``, the
default) or services on a Docker Swarm (``swarm``), named by ``MLOPS_ENGINE`` (a context's
``engine``). Every lifecycle step asks this module, so a plan, a switch, a rollback or a
take-down reads and changes deployments the same way on either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backends.defaults import ENGINES
from backends.docker import containers, registry, swarm, switch
from backends.docker.router_api import RouterApi
from backends.errors import InvalidInput, NotFound
from backends.lifecycle.handles import Handles
from backends.records import Deployment, ServingImage

__all__ = [
    "ENGINES",
    "ENGINE_ENV",
    "CanaryUnit",
    "canary_gone",
    "canary_units",
    "check_replicas",
    "engine_of",
    "get_deployment",
    "image_registry",
    "list_deployments",
    "previous_version",
    "refuse_on_swarm",
    "remove_canaries",
    "remove_deployment",
    "router_api",
    "run",
    "start_canary",
]

ENGINE_ENV = "MLOPS_ENGINE"
REGISTRY_ENV = "MLOPS_IMAGE_REGISTRY"  # a context's image_registry


def engine_of(environ: Mapping[str, str] | None = None) -> str:
    """The engine kind the environment names (``docker`` when it names none)."""
    value = (environ if environ is not None else os.environ).get(ENGINE_ENV, "").strip().lower()
    if not value:
        return "docker"
    if value not in ENGINES:
        raise InvalidInput(
            f"{ENGINE_ENV}={value!r} is not an engine; use one of: {', '.join(ENGINES)}",
            title="Unknown engine",
        )
    return value


def image_registry(environ: Mapping[str, str] | None = None) -> str:
    """The image registry the context names (``host:port``), or "" for none."""
    value = (environ if environ is not None else os.environ).get(REGISTRY_ENV, "").strip()
    return registry.check_registry(value) if value else ""


def list_deployments(h: Handles) -> list[Deployment]:
    if h.engine == "swarm":
        return swarm.list_deployments(h.docker())
    return containers.list_deployments(h.docker())


def get_deployment(h: Handles, name: str) -> Deployment:
    if h.engine == "swarm":
        return swarm.get_deployment(h.docker(), name)
    return containers.get_deployment(h.docker(), name)


def previous_version(h: Handles, name: str) -> int:
    if h.engine == "swarm":
        return swarm.previous_version(h.docker(), name)
    return containers.previous_version(h.docker(), name)


def run(
    h: Handles,
    image: ServingImage,
    name: str,
    *,
    port: int,
    host: str,
    alias: str,
    follow_alias_ref: str | None = None,
    replicas: int | None = None,
    on_log: Callable[[str], None] = lambda _: None,
    timeout: float | None = None,
) -> tuple[Deployment, int | None]:
    """Serve ``image`` as deployment ``name`` (switching an existing one with no failed
    request); the deployment and the version it replaced. ``timeout``: seconds the new
    version has to be ready (None: the engine's default)."""

    if h.engine == "swarm":
        # With an image registry, the services run the image by its digest there (every node
        # pulls the same bytes); without one, the engine's local image (one node).
        target = image_registry()
        pinned = registry.push(h.docker(), image, target, on_log).pinned if target else None
        return swarm.deploy(
            h.docker(),
            image,
            name,
            port=port,
            host=host,
            alias=alias,
            follow_alias_ref=follow_alias_ref,
            replicas=replicas,
            pinned=pinned,
            timeout=timeout or swarm.DEFAULT_TIMEOUT,
        )
    check_replicas(h, replicas)
    return switch.deploy(
        h.docker(),
        image,
        name,
        port=port,
        host=host,
        alias=alias,
        follow_alias_ref=follow_alias_ref,
        tracking_uri=h.tracking_uri,
        timeout=timeout or switch.DEFAULT_TIMEOUT,
    )


def check_replicas(h: Handles, replicas: int | None) -> None:
    """InvalidInput for more than one replica where deployments have one model container."""
    if replicas not in (None, 1) and h.engine != "swarm":
        raise InvalidInput(
            f'--replicas {replicas} needs a swarm context (engine = "swarm"): on one Docker '
            "engine a deployment serves from one model container",
        )


def remove_deployment(h: Handles, name: str) -> list[str]:
    if h.engine == "swarm":
        return swarm.remove_deployment(h.docker(), name)
    return containers.remove_deployment(h.docker(), name)


# ---------------------------------------------------------------------- canaries
# A canary beside the serving version: a container on one engine (scraped at its own port), a
# service of as many tasks on a swarm (scraped through the router: the overlay is not reachable
# from here). Either way the router's canary upstream takes its share of the traffic.


@dataclass(frozen=True)
class CanaryUnit:
    """A started canary: its container's or service's name, the router's upstream for it,
    and its own port on the engine's host (0 on a swarm: read through the router)."""

    name: str
    upstream: str
    port: int


def start_canary(
    h: Handles, image: ServingImage, name: str, alias: str, *, shadow: bool = False
) -> CanaryUnit:
    """The canary of ``image`` beside deployment ``name``'s serving version, ready; one that
    never is is removed (ContainerFailed says why) and nothing else changed. ``shadow``: a
    candidate that only answers the router's copies (the mirror)."""
    client = h.docker()
    if h.engine == "swarm":
        target = image_registry()
        pinned = registry.push(client, image, target).pinned if target else None
        service, upstream = swarm.start_canary(
            client, image, name, alias=alias, pinned=pinned, shadow=shadow
        )
        return CanaryUnit(service.name, upstream, 0)
    container, port = switch.start_canary(client, image, name, alias=alias, shadow=shadow)
    # The router runs on the engine's host too: the canary is on its loopback.
    return CanaryUnit(container.name, f"http://127.0.0.1:{port}", port)


def canary_units(h: Handles, name: str) -> list[str]:
    """The names of deployment ``name``'s canary containers or services."""
    if h.engine == "swarm":
        return [s.name for s in swarm.canary_services(h.docker(), name)]
    return [c.name for c in containers.canary_containers(h.docker(), name)]


def canary_gone(h: Handles, name: str, unit: str) -> str:
    """How canary ``unit`` of ``name`` is gone ("is exited", "is missing", ...), else ""."""
    if h.engine == "swarm":
        return swarm.canary_state(h.docker(), name, unit)
    for container in containers.canary_containers(h.docker(), name):
        if container.name == unit:
            return "" if container.status == "running" else f"is {container.status}"
    return "is missing"


def remove_canaries(h: Handles, name: str) -> None:
    """Remove deployment ``name``'s canary containers or services."""
    if h.engine == "swarm":
        swarm.remove_canaries(h.docker(), name)
        return
    for container in containers.canary_containers(h.docker(), name):
        containers.remove_container(container)


def router_api(h: Handles, name: str) -> RouterApi:
    """The admin API of deployment ``name``'s router (NotFound without one)."""
    if h.engine == "swarm":
        return swarm.router_api(h.docker(), name)
    router = containers.router_of(h.docker(), name)
    if router is None:
        raise NotFound(f"deployment {name!r} has no router (see `mlops deploy ps`)")
    return RouterApi(router)


def refuse_on_swarm(h: Handles, what: str) -> None:
    """InvalidInput for what a swarm context cannot do yet (following an alias)."""
    if h.engine == "swarm":
        raise InvalidInput(
            f"{what} is not supported on a swarm context yet: use a context with "
            'engine = "docker", or switch versions with `mlops deploy up`',
            title="Not on a swarm",
        )
