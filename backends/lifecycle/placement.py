"""Where a context's deployments live: containers on one Docker engine (``docker``, the
default) or services on a Docker Swarm (``swarm``), named by ``MLOPS_ENGINE`` (a context's
``engine``). Every lifecycle step asks this module, so a plan, a switch, a rollback or a
take-down reads and changes deployments the same way on either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from backends.defaults import ENGINES
from backends.docker import containers, registry, swarm, switch
from backends.errors import InvalidInput
from backends.lifecycle.handles import Handles
from backends.records import Deployment, ServingImage

__all__ = [
    "ENGINES",
    "ENGINE_ENV",
    "check_replicas",
    "engine_of",
    "get_deployment",
    "image_registry",
    "list_deployments",
    "previous_version",
    "refuse_on_swarm",
    "remove_deployment",
    "run",
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
) -> tuple[Deployment, int | None]:
    """Serve ``image`` as deployment ``name`` (switching an existing one with no failed
    request); the deployment and the version it replaced."""
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


def refuse_on_swarm(h: Handles, what: str) -> None:
    """InvalidInput for what a swarm context cannot do yet (canary releases, shadows)."""
    if h.engine == "swarm":
        raise InvalidInput(
            f"{what} is not supported on a swarm context yet: use a context with "
            'engine = "docker", or switch versions with `mlops deploy up`',
            title="Not on a swarm",
        )
