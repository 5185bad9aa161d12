"""Build, deploy and roll back as whole operations: the one sequence `mlops image build`,
`mlops deploy up/rollback` and the console's Deployments screen all run, so they cannot drift.

Each operation pins the model version first, finds the serving image (building it when missing),
asks ``backends.containers`` to switch with no failed request, writes the move into the model's
history and refreshes Prometheus' targets. A deploy is planned before it runs (``plan_deploy``)
so a caller can show exactly what will change and then run that plan, not a re-read of the alias.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from backends import containers, images
from backends.errors import BackendError, Conflict, GateFailed, InvalidInput
from backends.records import (
    AliasAction,
    BuildOutcome,
    Deployment,
    DeployOutcome,
    DeployPlan,
    ResolvedVersion,
    RollbackOutcome,
    RollbackPlan,
    ServingImage,
)

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "BuildOutcome",
    "DeployOutcome",
    "DeployPlan",
    "RollbackOutcome",
    "RollbackPlan",
    "build",
    "check_name",
    "default_name",
    "deploy",
    "plan_deploy",
    "plan_rollback",
    "rollback",
    "take_down",
]

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
DEFAULT_ALIAS = "champion"

LogLine = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


# ---------------------------------------------------------------------- names


def check_name(name: str) -> None:
    """InvalidInput unless ``name`` can name a deployment (and its containers)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise InvalidInput(f"invalid deployment name {name!r}: use letters, digits, '_' or '-'")


def default_name(model: str) -> str:
    """The deployment name a model gets when none is given."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", model).strip("-")[:64] or "model"


# ---------------------------------------------------------------------- build


def build(
    client: Any,
    tracking_uri: str,
    reference: str,
    *,
    tag: str | None = None,
    base_image: str | None = None,
    on_log: LogLine = _ignore,
) -> BuildOutcome:
    """Build (or reuse from cache) the serving image of the version ``reference`` names now."""
    resolved = images.resolve_version(tracking_uri, reference)
    before = images.find_image(client, resolved.name, resolved.version, resolved.run_id)
    image = images.build_image(
        client, tracking_uri, resolved, tag=tag, base_image=base_image, on_log=on_log
    )
    # The build context is deterministic: the same id again means every step came from cache.
    return BuildOutcome(image, resolved, cached=before is not None and before.id == image.id)


def _image_for(
    client: Any, tracking_uri: str, resolved: ResolvedVersion, on_log: LogLine
) -> tuple[ServingImage, bool]:
    """The image of ``resolved`` and whether it had to be built now."""
    found = images.find_image(client, resolved.name, resolved.version, resolved.run_id)
    if found is not None:
        return found, False
    on_log(f"no image for {resolved.uri} yet; building it")
    return images.build_image(client, tracking_uri, resolved, on_log=on_log), True


# ---------------------------------------------------------------------- deploy


def plan_deploy(
    client: Any,
    tracking_uri: str,
    reference: str,
    *,
    name: str | None = None,
    port: int | None = None,
    host: str | None = None,
    follow_alias: bool = False,
) -> DeployPlan:
    """Pin ``reference`` to a version and say what deploying it as ``name`` would change.

    ``port``/``host`` default to the existing deployment's address, else 127.0.0.1:8080.
    """
    model, alias, _ = images.parse_reference(reference)
    name = name or default_name(model)
    check_name(name)
    if follow_alias:
        if not alias:
            raise InvalidInput(
                f"only a NAME@ALIAS reference can be followed, not {reference!r}",
                title="Cannot follow",
            )
        containers.check_can_follow(tracking_uri)
    current = next((d for d in containers.list_deployments(client) if d.name == name), None)
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
    resolved = images.resolve_version(tracking_uri, reference)
    found = images.find_image(client, resolved.name, resolved.version, resolved.run_id)
    return DeployPlan(
        reference=reference,
        resolved=resolved,
        name=name,
        host=host or (current.host if current is not None else DEFAULT_HOST),
        port=port or (current.port if current is not None and current.port else DEFAULT_PORT),
        follow_alias=follow_alias,
        current=current,
        image=found,
    )


def deploy(
    client: Any,
    tracking_uri: str,
    plan: DeployPlan,
    *,
    reason: str = "",
    on_log: LogLine = _ignore,
) -> DeployOutcome:
    """Run ``plan``: build the image if missing, switch with no failed request, record it."""
    image, built = _image_for(client, tracking_uri, plan.resolved, on_log)
    deployment, replaced = containers.deploy(
        client,
        image,
        plan.name,
        port=plan.port,
        host=plan.host,
        alias=plan.resolved.alias,
        follow_alias_ref=plan.reference if plan.follow_alias else None,
        tracking_uri=tracking_uri,
    )
    warning = _after_switch(client, tracking_uri, deployment, "deploy", replaced, reason)
    return DeployOutcome(deployment, replaced, image, built, warning)


# ---------------------------------------------------------------------- rollback


def plan_rollback(client: Any, tracking_uri: str, name: str) -> RollbackPlan:
    """Where ``rollback`` would go: back to the replaced container's version, or for a
    deployment that follows an alias, to the version that alias held before."""
    current = containers.get_deployment(client, name)
    if not current.follow_alias:
        target = containers.rollback_target(client, name)
        resolved = images.resolve_version(tracking_uri, f"{current.model}/{target}")
        found = images.find_image(client, resolved.name, resolved.version, resolved.run_id)
        return RollbackPlan(
            name, current.model, current.version, target, image_missing=found is None
        )
    from backends.registry import Registry
    from backends.registry_history import rollback_target as alias_rollback_target

    registry = Registry(tracking_uri)
    alias = _followed_alias(current)
    now = registry.alias_state(current.model, alias).version
    back = alias_rollback_target(registry.history(current.model, alias), now)
    if back is None:
        raise GateFailed(
            f"{alias} of {current.model} has no earlier version to roll back to",
            title="Nothing to roll back to",
        )
    return RollbackPlan(name, current.model, str(now), str(back), alias=alias)


def rollback(
    client: Any,
    tracking_uri: str,
    name: str,
    *,
    to: str | None = None,
    reason: str = "",
    on_log: LogLine = _ignore,
) -> RollbackOutcome:
    """Back to the previously deployed version (or ``to``), with no failed request."""
    current = containers.get_deployment(client, name)
    if current.follow_alias:
        return _rollback_alias(tracking_uri, current, to, reason)
    target = to or containers.rollback_target(client, name)
    resolved = images.resolve_version(tracking_uri, f"{current.model}/{target}")
    image, _ = _image_for(client, tracking_uri, resolved, on_log)
    deployment, replaced = containers.deploy(
        client,
        image,
        name,
        port=current.port or DEFAULT_PORT,
        host=current.host,
        alias="",  # a rollback serves an older version: the alias no longer names it
        tracking_uri=tracking_uri,
    )
    return RollbackOutcome(
        name,
        deployment.model,
        replaced,
        deployment.version,
        deployment=deployment,
        warning=_after_switch(client, tracking_uri, deployment, "rollback", replaced, reason),
    )


def _rollback_alias(
    tracking_uri: str, current: Deployment, to: str | None, reason: str
) -> RollbackOutcome:
    """A deployment that follows its alias serves what the alias names: move the alias back."""
    from backends.registry import Registry

    alias = _followed_alias(current)
    if to is not None and not to.isdigit():
        raise InvalidInput(f"--to takes a version number, not {to!r}")
    event = Registry(tracking_uri).rollback(
        current.model, alias=alias, to=int(to) if to else None, reason=reason
    )
    return RollbackOutcome(
        current.name,
        current.model,
        str(event.from_version) if event is not None else current.version,
        str(event.to_version) if event is not None else to,
        alias=alias,
        alias_event=event,
    )


def _followed_alias(deployment: Deployment) -> str:
    return deployment.alias or DEFAULT_ALIAS


# ---------------------------------------------------------------------- bookkeeping


def _after_switch(
    client: Any,
    tracking_uri: str,
    deployment: Deployment,
    action: AliasAction,
    replaced: str | None,
    reason: str,
) -> str:
    """Bookkeeping once the new version serves: the history entry (the same stream as the
    registry's alias moves) and Prometheus' targets. Neither may turn a switch that happened
    into a reported failure (an operator would deploy again): a failure is a warning."""
    from backends import deploy_history

    warnings = []
    try:
        deploy_history.record(tracking_uri, deployment, action, replaced, reason)
    except BackendError as exc:
        warnings.append(f"the {action} is not in the history ({exc.message})")
    if targets := _refresh_targets(client):
        warnings.append(targets)
    return "; ".join(warnings)


def take_down(client: Any, name: str) -> tuple[list[str], str]:
    """Remove a deployment's containers (drained); the names removed and a targets warning."""
    removed = containers.remove_deployment(client, name)
    return removed, _refresh_targets(client)


def _refresh_targets(client: Any) -> str:
    """Keep Prometheus' file_sd targets in step; a failure is a warning, not a failed deploy."""
    from backends import discovery

    try:
        discovery.refresh_from_docker(client)
    except (OSError, BackendError) as exc:
        return f"could not update the Prometheus targets file: {exc}"
    return ""
