"""What a plan will change, in words: the text of the console's confirmations and of the
CLI's question before it applies a plan (one text for both, so they cannot disagree)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backends.records import (
        AliasRollbackPlan,
        ApprovePlan,
        CanaryRelease,
        DeployOutcome,
        DeployPlan,
        GateResult,
        PendingApproval,
        PromotePlan,
        RollbackOutcome,
        RollbackPlan,
        TakeDownPlan,
    )


def deploy_summary(plan: DeployPlan) -> str:
    """Exactly what a deploy will change, from its plan."""
    v = plan.version
    where = f"{plan.host}:{plan.port}"
    if plan.engine == "swarm":
        return _swarm_deploy_summary(plan)
    if plan.current is None:
        change = "new deployment"
        how = f"A router and v{v.version}'s model container start on {where}."
    else:
        change = f"replacing v{plan.replaces}"
        if plan.replaces == v.version:
            change += " (the same version, in a fresh container)"
        how = (
            f"v{v.version}'s container starts, the router switches once it is ready "
            f"(no failed request), then v{plan.replaces}'s container is removed."
        )
    lines = [f"Deploy {v.name} v{v.version} as {plan.name} on {where}, {change}", ""]
    if plan.alias:
        lines.append(f"  {plan.reference} names v{v.version} now")
    if plan.image is None:
        lines += [
            f"  no image of v{v.version} yet: it is built first (minutes),",
            f"  as `b` or `mlops image build {v.name}/{v.version}` would",
        ]
    else:
        lines.append(f"  image {plan.image.ref} (built)")
    if plan.follow_alias:
        lines.append(f"  follows {plan.alias}: reloads by itself when the alias moves")
    return "\n".join([*lines, "", how])


def _swarm_deploy_summary(plan: DeployPlan) -> str:
    v = plan.version
    where = f"port {plan.port} of this node"
    if plan.current is None:
        change = "new deployment on the swarm"
        how = (
            f"A router service and v{v.version}'s service (--replicas, else 1 task) start, "
            f"published on {where}."
        )
    else:
        change = f"replacing v{plan.replaces} on the swarm"
        how = (
            f"v{v.version}'s service starts (--replicas, else as many tasks as "
            f"v{plan.replaces}'s), the router switches once every task is ready (no failed "
            f"request), then v{plan.replaces}'s service is removed."
        )
    lines = [f"Deploy {v.name} v{v.version} as {plan.name} on {where}, {change}", ""]
    if plan.alias:
        lines.append(f"  {plan.reference} names v{v.version} now")
    if plan.image is None:
        lines.append(f"  no image of v{v.version} yet: it is built first (minutes)")
    else:
        lines.append(f"  image {plan.image.ref} (built)")
    if plan.image_registry:
        lines.append(f"  pushed to {plan.image_registry} first: the services run it by digest")
    else:
        lines.append("  no image_registry: the services run this engine's local image (one node)")
    return "\n".join([*lines, "", how])


def take_down_summary(plan: TakeDownPlan) -> str:
    """Exactly what taking a deployment down removes."""
    d = plan.current
    kind = "services" if plan.engine == "swarm" else "containers"
    return (
        f"Take down deployment '{d.name}'\n"
        f"  serving {d.model} v{d.version or '?'} on port {d.port or '-'}\n"
        f"  {kind}: {', '.join(plan.containers) or '-'}\n\n"
        "They are stopped (drained) and removed; clients of "
        f"{d.url or 'its address'} get no answer afterwards."
    )


def rollback_summary(plan: RollbackPlan) -> str:
    """Exactly what a deployment rollback will change."""
    head = f"Roll back deployment '{plan.name}' ({plan.model})"
    if plan.alias:
        return (
            f"{head}\n  it follows {plan.alias}: {plan.model}@{plan.alias} moves back\n"
            f"  from version {plan.from_version}\n  to   version {plan.to_version}\n\n"
            "The deployment reloads in place when the alias moves (no restart)."
        )
    build = (
        f"\n\nNo image of v{plan.to_version} is left: it is built first (minutes)."
        if plan.image_missing
        else ""
    )
    return (
        f"{head}\n  from version {plan.from_version}\n  to   version {plan.to_version}\n\n"
        "The previous version's container starts, the router switches once it is ready "
        f"(no failed request), then the current one is removed.{build}"
    )


def deployed(outcome: DeployOutcome) -> str:
    """What a finished deploy changed, in one line."""
    d = outcome.deployment
    text = f"{d.name} now serves {d.model} v{d.version} on {d.url or '-'}"
    text += f" (was v{outcome.replaced})" if outcome.replaced else " (new deployment)"
    text += "; its image was built first" if outcome.built else ""
    return text + (f"; warning: {outcome.warning}" if outcome.warning else "")


def rolled_back(outcome: RollbackOutcome) -> str:
    """What a finished rollback changed, in one line."""
    if outcome.via_alias and outcome.alias_event is None:
        return f"{outcome.alias} already names v{outcome.to_version}; nothing moved"
    if outcome.via_alias:
        return (
            f"{outcome.model}@{outcome.alias} rolled back from v{outcome.from_version} to "
            f"v{outcome.to_version}; {outcome.name} reloads in place"
        )
    text = (
        f"{outcome.name} now serves {outcome.model} v{outcome.to_version} "
        f"(was v{outcome.from_version})"
    )
    return text + (f"; warning: {outcome.warning}" if outcome.warning else "")


def promote_summary(plan: PromotePlan, gate: GateResult | None = None) -> str:
    """Exactly what a promotion will move, from its plan, and what its gate found."""
    was = f"version {plan.from_version}" if plan.from_version is not None else "unset"
    text = (
        f"Move alias '{plan.alias}' of model '{plan.model}'\n"
        f"  from {was}\n  to   version {plan.version}\n\n"
    )
    if gate is not None:
        text += "Gate (run now):\n" + "\n".join(
            f"  {'✓' if c.passed else '✗'} {c.name}: {c.detail}"
            for c in gate.checks
            # The policy's own lines follow; without a report, its check says there was none.
            if c.name != "policy" or gate.policy is None
        )
        if gate.policy is not None:
            from backends.policy.report import brief  # numpy: only when there is a report

            text += "\n" + brief(gate.policy)
        text += "\n\n"
        return text + (
            "The gate runs again as the alias moves; nothing moves if a check fails then, or "
            "if someone moves the alias before you confirm."
        )
    return text + (
        "The promotion gate runs first (signature, loads and predicts, and the model's "
        "gate.yaml on held-out data); nothing moves if a check fails, or if someone moves the "
        "alias before you confirm."
    )


def gate_failure(gate: GateResult) -> str:
    """A failed gate as the dialog says it: every failed check, and the policy's report."""
    failed = "\n".join(f"✗ {c.name}: {c.detail}" for c in gate.checks if not c.passed)
    text = f"version {gate.version} of {gate.model} did not pass; nothing moves.\n{failed}"
    if gate.policy is not None:
        from backends.policy.report import brief

        text += "\n\n" + brief(gate.policy)
    return text


def alias_rollback_summary(plan: AliasRollbackPlan) -> str:
    """Exactly what an alias rollback will move, from its plan."""
    return (
        f"Move alias '{plan.alias}' of model '{plan.model}' back\n"
        f"  from version {plan.from_version}\n"
        f"  to   version {plan.to_version} (the version it held before)\n\n"
        "Nothing moves if someone moves the alias before you confirm."
    )


def pending_lines(pending: PendingApproval) -> list[str]:
    """Why a challenger waits and what it was judged on: its trigger and its gate report."""
    lines = [f"trigger: {pending.trigger.summary() if pending.trigger else 'not recorded'}"]
    if pending.report is None:
        lines.append("gate report: none (moved to challenger by hand, never gated by a retrain)")
        return lines
    lines.append(f"gate report ({pending.report.at}):")
    lines += [f"  {line}" for line in pending.report.lines()]
    return lines


def approve_summary(plan: ApprovePlan) -> str:
    """Exactly what an approval will move, with what the approver is vouching for."""
    was = f"version {plan.from_version}" if plan.from_version is not None else "unset"
    body = "\n".join(pending_lines(plan.pending))
    return (
        f"Approve challenger version {plan.version} of model '{plan.model}':\n"
        f"move alias 'champion' from {was} to version {plan.version}\n\n{body}\n\n"
        "The gate runs again first; you are recorded as the approver. Nothing moves if a "
        "check fails, or if champion or challenger moves before you confirm."
    )


CANARY_EFFECTS = {
    "resume": "The analysis goes on at {weight}: the next evaluation comes one interval from now.",
    "abort": (
        "All traffic goes back to stable v{stable} (the router drains the canary), then the "
        "canary's container is removed. Nothing else of the deployment changes."
    ),
    "promote": (
        "v{canary} becomes the stable version now, without further analysis: {how} Then the "
        "canary is drained and removed."
    ),
}


def canary_summary(release: CanaryRelease, command: str) -> str:
    """What a person's resume, abort or promote of a canary release will do."""
    r = release
    how = (
        f"{r.model}@{r.alias} moves to v{r.canary_version} through the promotion gate and "
        f"{r.deployment} reloads it."
        if r.follow_alias and r.alias
        else f"{r.deployment} switches to it with no failed request."
    )
    effect = CANARY_EFFECTS[command].format(
        weight=f"{r.weight:g} %",
        stable=r.stable_version if r.stable_version is not None else "?",
        canary=r.canary_version,
        how=how,
    )
    lines = [
        f"{command.capitalize()} the canary release of {r.deployment}: {r.model} "
        f"v{r.canary_version} at {r.weight:g} % beside stable v{r.stable_version}",
        f"  now {r.status}, step {r.step}/{len(r.steps)}, "
        f"{r.failures}/{r.failure_limit} failed evaluations",
        "",
        effect,
        "",
        "Written into the deployment's history as decided by the operator.",
    ]
    return "\n".join(lines)


def canary_decided(release: CanaryRelease, command: str) -> str:
    """The outcome of a person's decision, in a line."""
    r = release
    done = {"resume": "resumed", "abort": "aborted", "promote": "promoted"}[command]
    where = {
        "resume": f"at {r.weight:g} %",
        "abort": f"all traffic on stable v{r.stable_version}",
        "promote": f"v{r.canary_version} is the stable version",
    }[command]
    note = f" ({r.problem})" if r.problem else ""
    return f"{r.deployment}: canary v{r.canary_version} {done}, {where}{note}"
