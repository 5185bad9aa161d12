"""Deploy and take down, as plans: the one sequence `mlops deploy up/down` and the console's
Deployments screen both run, so they cannot drift apart.

``plan_deploy`` pins the reference to a version and says what serves under the name now;
``apply_deploy`` refuses (Conflict) if that changed since, builds the image when missing,
switches with no failed request, writes the move into the model's history and refreshes
Prometheus' targets. Take-down is planned and applied the same way.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

from backends.defaults import DEFAULT_HOST, DEFAULT_PORT
from backends.docker import containers, images, swarm, switch
from backends.docker.lock import deployment_lock
from backends.docker.swarm import VersionReplicas
from backends.errors import BackendError, Conflict, InvalidInput
from backends.lifecycle import placement
from backends.lifecycle.build import image_for
from backends.lifecycle.handles import Handles
from backends.lifecycle.targets import refresh_quietly
from backends.mlflow.history import current_user
from backends.mlflow.models import parse_reference
from backends.records import (
    AliasAction,
    Deployment,
    DeployOutcome,
    DeployPlan,
    TakeDownOutcome,
    TakeDownPlan,
)

__all__ = [
    "after_switch",
    "apply_deploy",
    "apply_take_down",
    "changing",
    "check_name",
    "check_unchanged",
    "default_name",
    "plan_deploy",
    "plan_take_down",
    "refuse_during_canary",
]

LogLine = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


def check_name(name: str) -> None:
    """InvalidInput unless ``name`` can name a deployment (and its containers)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise InvalidInput(f"invalid deployment name {name!r}: use letters, digits, '_' or '-'")


def default_name(model: str) -> str:
    """The deployment name a model gets when none is given."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", model).strip("-")[:64] or "model"


def _find(h: Handles, name: str) -> Deployment | None:
    return next((d for d in placement.list_deployments(h) if d.name == name), None)


def _serves(d: Deployment | None) -> str:
    if d is None:
        return "nothing (no such deployment)"
    return f"{d.model} v{d.version or '?'} (container {d.container_id or '-'})"


@contextlib.contextmanager
def changing(h: Handles, name: str, image: str, what: str) -> Iterator[None]:
    """Hold deployment ``name``'s engine-wide lock for one change (Conflict names the holder)."""
    who = f"{h.registry().user if h.has_registry else current_user()} ({what})"
    with deployment_lock(h.docker(), name, image, who):
        yield


def refuse_during_canary(h: Handles, name: str) -> None:
    """Conflict while deployment ``name`` has a canary beside its stable version: a switch
    would pull the stable version out from under the release's analysis."""
    if placement.canary_units(h, name):
        raise Conflict(
            f"deployment {name!r} has a canary release running: promote or abort it first "
            f"(mlops deploy canary {name} --promote / --abort)"
        )


def _identity(d: Deployment | None) -> tuple[str, int | None, str] | None:
    return None if d is None else (d.container_id, d.version, d.run_id)


def check_unchanged(name: str, planned: Deployment | None, now: Deployment | None) -> None:
    """Conflict, naming what moved, unless deployment ``name`` is as the plan saw it."""
    if _identity(planned) == _identity(now):
        return
    raise Conflict(
        f"deployment {name!r} changed since the plan: it served {_serves(planned)}, it serves "
        f"{_serves(now)} now; nothing changed, look again and retry"
    )


# ---------------------------------------------------------------------- deploy


def _default_host(h: Handles) -> str:
    """A new deployment's router address: this host's loopback, or every address of the
    engine's host when that is another one (its loopback is not reached from here)."""
    from backends.docker.engine import is_remote

    return "0.0.0.0" if is_remote(h.docker()) else DEFAULT_HOST


def plan_deploy(
    h: Handles,
    reference: str,
    *,
    name: str | None = None,
    port: int | None = None,
    host: str | None = None,
    follow_alias: bool = False,
) -> DeployPlan:
    """Pin ``reference`` to a version and say what deploying it as ``name`` would change.

    ``port``/``host`` default to the existing deployment's address, else 127.0.0.1:8080 (on
    an engine on another host, 0.0.0.0:8080: its loopback is not reached from here).
    """
    model, alias, _ = parse_reference(reference)
    name = name or default_name(model)
    check_name(name)
    if host is not None:
        host = host.strip().strip("[]")  # [::1] as a URL writes it: the address is ::1
    if follow_alias:
        if not alias:
            raise InvalidInput(
                f"only a NAME@ALIAS reference can be followed, not {reference!r}",
                title="Cannot follow",
            )
        placement.refuse_on_swarm(h, "following an alias")
        switch.check_can_follow(h.tracking_uri)
        switch.check_follow_reaches(h.docker(), h.tracking_uri)
    current = _find(h, name)
    if current is not None:
        refuse_during_canary(h, name)
    moved = current is not None and (
        (port is not None and current.port is not None and current.port != port)
        or (host is not None and current.host != host)
    )
    if current is not None and moved:
        # The router keeps its address across a switch; another one would reach someone else.
        raise Conflict(
            f"deployment {name!r} serves on {current.host}:{current.port}: deploy over it at "
            f"that address, or take it down first to move it"
        )
    version = h.registry().resolve(reference)
    if h.engine == "swarm":
        swarm.check_service_name(name, version.version)
    if current is not None and current.store and current.store != version.store:
        raise Conflict(
            f"deployment {name!r} serves {current.model} v{current.version} from another "
            f"tracking store ({current.store}, this one is {version.store}): it is not this "
            "store's deployment; choose another --name, or take it down where it was made"
        )
    if current is None:
        host = host or _default_host(h)
        if h.engine == "docker":
            switch.check_reachable(h.docker(), host)
    return DeployPlan(
        reference=reference,
        version=version,
        alias=alias or "",
        name=name,
        host=host or (current.host if current is not None else DEFAULT_HOST),
        port=port or (current.port if current is not None and current.port else DEFAULT_PORT),
        follow_alias=follow_alias,
        current=current,
        image=images.find_image(h.docker(), version),
        engine=h.engine,
        image_registry=placement.image_registry() if h.engine == "swarm" else "",
    )


def apply_deploy(
    h: Handles,
    plan: DeployPlan,
    *,
    reason: str = "",
    on_log: LogLine = _ignore,
    replicas: int | None = None,
    timeout: float | None = None,
) -> DeployOutcome:
    """Run ``plan`` as shown: build the image if missing; then, holding the deployment's lock
    (one change at a time, across processes), Conflict if it changed since the plan, else
    switch with no failed request, and record it."""
    image, built = image_for(h, plan.version, on_log)
    with changing(h, plan.name, image.ref, "deploy"):
        check_unchanged(plan.name, plan.current, _find(h, plan.name))
        if plan.current is not None:
            refuse_during_canary(h, plan.name)  # again: one may have started since the plan
        deployment, replaced = placement.run(
            h,
            image,
            plan.name,
            port=plan.port,
            host=plan.host,
            alias=plan.alias,
            follow_alias_ref=plan.reference if plan.follow_alias else None,
            replicas=replicas,
            on_log=on_log,
            timeout=timeout,
        )
    warning = after_switch(h, deployment, "deploy", replaced, reason)
    return DeployOutcome(deployment, replaced, image, built, warning)


def after_switch(
    h: Handles, deployment: Deployment, action: AliasAction, replaced: int | None, reason: str
) -> str:
    """Bookkeeping once the new version serves: the history entry (the same stream as the
    registry's alias moves) and Prometheus' targets. Neither may turn a switch that happened
    into a reported failure (an operator would deploy again): a failure is a warning."""
    warnings = []
    try:
        h.registry().record_deployment(
            deployment.model, deployment.name, action, replaced, deployment.version, reason
        )
    except BackendError as exc:
        warnings.append(f"the {action} is not in the history ({exc.message})")
    if targets := refresh_quietly(h.docker()):
        warnings.append(targets)
    return "; ".join(warnings)


# ---------------------------------------------------------------------- take down


def plan_take_down(h: Handles, name: str) -> TakeDownPlan:
    """What taking ``name`` down removes (NotFound when there is no such deployment)."""
    current = placement.get_deployment(h, name)
    if h.engine == "swarm":
        services = [r.service for r in swarm.replicas(h.docker(), name)]
        services += placement.canary_units(h, name)
        return TakeDownPlan(name, current, (f"mlops-{name}", *services), engine="swarm")
    router = containers.router_of(h.docker(), name)
    names = ([router.name] if router is not None else []) + [
        c.name
        for c in containers.model_containers(h.docker(), name)
        + containers.canary_containers(h.docker(), name)
    ]
    return TakeDownPlan(name, current, tuple(names))


def apply_take_down(h: Handles, plan: TakeDownPlan) -> TakeDownOutcome:
    """Remove the deployment's containers (drained) if it is as the plan saw it."""
    lock_image = plan.current.image or images.DEFAULT_LOCAL_BASE
    with changing(h, plan.name, lock_image, "take down"):
        check_unchanged(plan.name, plan.current, _find(h, plan.name))
        removed = placement.remove_deployment(h, plan.name)
    return TakeDownOutcome(plan.name, tuple(removed), refresh_quietly(h.docker()))


# ---------------------------------------------------------------------- scale (swarm)


def scale(h: Handles, name: str, count: int) -> VersionReplicas:
    """Run ``count`` tasks of the version swarm deployment ``name`` serves, holding the
    deployment's lock (a deploy or rollback meanwhile would scale a version on its way out)."""
    if h.engine != "swarm":
        raise InvalidInput(
            'scaling needs a swarm context (engine = "swarm" in the context, or '
            "MLOPS_ENGINE=swarm): on one Docker engine a deployment is one model container"
        )
    current = placement.get_deployment(h, name)
    with changing(h, name, current.image or images.DEFAULT_LOCAL_BASE, "scale"):
        return swarm.scale(h.docker(), name, count)
