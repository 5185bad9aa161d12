"""Canary releases for the deployments and monitor screens: read from the release files
(``backends.lifecycle.canary``), and a person's decisions handed to each release's worker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from console.capabilities import CanaryCommand
from console.services.session import Session

if TYPE_CHECKING:
    from backends.lifecycle.canary import Release
    from backends.records import CanaryRelease

NOTE = "from the console"  # what the history says about a decision made here


class LocalCanaries:
    """The canaries capability: the very reads and requests of `mlops deploy canary`."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def canary_releases(self) -> list[CanaryRelease]:
        from backends.lifecycle import canary

        return [release_record(r) for r in canary.releases()]

    def decide_canary(self, name: str, command: CanaryCommand) -> CanaryRelease:
        """Carried out by the release's worker (or here): a refusal raises Conflict and a
        failure BackendError, both with the reason (``canary.request``)."""
        from backends.errors import NotFound
        from backends.lifecycle import canary

        with self.session.for_change() as h:
            if command == "abort":
                done = canary.abort_release(h, name, NOTE)
            else:
                done = canary.request(h, name, command, NOTE)
        if done is None:  # a canary no release here knew of was removed
            raise NotFound(f"deployment {name!r} has no canary release on record here")
        return release_record(done)


def release_record(release: Release) -> CanaryRelease:
    """Our record of a release file's state: each check with its last verdict and figures."""
    from backends.records import CanaryCheck, CanaryRelease

    state = release.state
    plan = state.plan
    evaluated = next((d for d in reversed(state.history) if d.results), None)
    results = {r.check: r for r in evaluated.results} if evaluated is not None else {}
    checks = []
    for check in plan.checks:
        result = results.get(check)
        if result is None:
            checks.append(CanaryCheck(check.describe()))
        else:
            figures = result.line.removesuffix(f" {result.verdict.mark}")
            checks.append(CanaryCheck(check.describe(), str(result.verdict), figures))
    return CanaryRelease(
        deployment=release.deployment,
        model=release.model,
        stable_version=release.stable_version,
        canary_version=release.canary_version,
        status=str(state.status),
        weight=state.weight,
        step=state.step + 1,
        steps=tuple(plan.steps),
        failures=state.failures,
        failure_limit=plan.failure_limit,
        interval=plan.interval,
        checks=tuple(checks),
        next_evaluation=_moment(release.next_evaluation) if not state.finished else None,
        updated=_moment(release.updated) or datetime.now(UTC),
        last=state.last.line if state.last is not None else "",
        problem=release.problem,
        worker_running=release.worker_alive,
        pending=release.command,
        alias=release.alias,
        follow_alias=release.follow_alias,
        figures={role: dict(values) for role, values in release.figures.items()},
        figures_source=release.figures_source,
    )


def _moment(epoch: float) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch > 0 else None
