"""Deployment rollback, as a plan: back to the version the deployment served before.

A deployment that serves one version goes back by a container switch (no failed request) to
the version its container replaced; one that follows an alias goes back by moving the alias
back (it reloads in place). The plan says which, from what to what; applying it refuses
(Conflict) when the deployment or the alias moved since.
"""

from __future__ import annotations

from collections.abc import Callable

from backends.defaults import CHAMPION, DEFAULT_PORT
from backends.docker import images
from backends.errors import GateFailed
from backends.lifecycle import placement
from backends.lifecycle.build import image_for
from backends.lifecycle.deploy import (
    after_switch,
    changing,
    check_unchanged,
    refuse_during_canary,
)
from backends.lifecycle.handles import Handles
from backends.records import AliasRollbackPlan, Deployment, RollbackOutcome, RollbackPlan

__all__ = ["apply_rollback", "plan_rollback"]

LogLine = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


def plan_rollback(h: Handles, name: str, *, to: int | None = None) -> RollbackPlan:
    """Where rolling ``name`` back goes (``to``: that version instead of the previous one)."""
    current = placement.get_deployment(h, name)
    refuse_during_canary(h, name)
    if current.follow_alias:
        alias = current.alias or CHAMPION
        moves = h.registry().plan_rollback(current.model, alias=alias, to=to)
        return RollbackPlan(
            name,
            current.model,
            moves.from_version,
            moves.to_version,
            current,
            alias=alias,
            seen=moves.seen,
        )
    target = to or placement.previous_version(h, name)
    if target == current.version:
        raise GateFailed(
            f"deployment {name!r} already serves v{target}: nothing to roll back; nothing changed",
            title="Nothing to roll back to",
        )
    version = h.registry().resolve(f"{current.model}/{target}")
    missing = images.find_image(h.docker(), version) is None
    return RollbackPlan(
        name, current.model, current.version, target, current, image_missing=missing
    )


def apply_rollback(
    h: Handles, plan: RollbackPlan, *, reason: str = "", on_log: LogLine = _ignore
) -> RollbackOutcome:
    """Roll back as planned, with no failed request; Conflict if anything moved since."""
    refuse_during_canary(h, plan.name)  # again: one may have started since the plan
    if plan.via_alias:
        check_unchanged(plan.name, plan.current, _current(h, plan.name))
        assert plan.seen is not None
        event = h.registry().apply_rollback(
            AliasRollbackPlan(plan.model, plan.alias, plan.seen, plan.to_version), reason=reason
        )
        return RollbackOutcome(
            plan.name,
            plan.model,
            event.from_version if event is not None else plan.from_version,
            event.to_version if event is not None else plan.to_version,
            alias=plan.alias,
            alias_event=event,
        )
    version = h.registry().resolve(f"{plan.model}/{plan.to_version}")
    image, _ = image_for(h, version, on_log)
    with changing(h, plan.name, image.ref, "rollback"):
        check_unchanged(plan.name, plan.current, _current(h, plan.name))
        refuse_during_canary(h, plan.name)
        deployment, replaced = placement.run(
            h,
            image,
            plan.name,
            port=plan.current.port or DEFAULT_PORT,
            host=plan.current.host,
            alias="",  # a rollback serves an older version: the alias no longer names it
            on_log=on_log,
        )
    return RollbackOutcome(
        plan.name,
        deployment.model,
        replaced,
        deployment.version,
        deployment=deployment,
        warning=after_switch(h, deployment, "rollback", replaced, reason),
    )


def _current(h: Handles, name: str) -> Deployment | None:
    return next((d for d in placement.list_deployments(h) if d.name == name), None)
