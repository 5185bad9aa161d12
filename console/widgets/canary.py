"""A canary release in words: the deployments screen's panel (weight, step, failures, each
check's last figures and verdict, the time to the next evaluation) and the monitor's stable and
canary figures side by side. Verdicts are marks and words (✓ ✗ ?), never colour alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backends.records import CanaryRelease
from console import format as fmt

FINISHED_SHOWN = timedelta(minutes=10)  # a finished release stays on show this long after it ended
# The monitor's columns: (metric, heading, how it is shown)
COMPARED = (
    ("request_rate", "req/s", lambda v: fmt.number(v, 3)),
    ("error_ratio", "5xx", fmt.percent),
    ("p50", "p50", fmt.millis),
    ("p95", "p95", fmt.millis),
    ("p99", "p99", fmt.millis),
    ("accuracy", "accuracy", lambda v: fmt.number(v, 3)),
)


def shown(release: CanaryRelease | None, now: datetime | None = None) -> bool:
    """Whether a release is worth showing: running or paused, or finished a moment ago."""
    if release is None:
        return False
    if not release.finished:
        return True
    return (now or datetime.now(UTC)) - release.updated <= FINISHED_SHOWN


def version_cell(version: int | None, release: CanaryRelease | None) -> str:
    """The deployments table's version cell: ``v2 + canary v3 25%`` while a canary runs."""
    base = f"v{version}" if version else "-"
    if release is None or release.finished:
        return base
    return f"{base} + canary v{release.canary_version} {release.weight:g}%"


def countdown(release: CanaryRelease, now: datetime | None = None) -> str:
    """``next evaluation in 42s``; ``evaluating…`` once due; what it waits for otherwise."""
    if release.finished:
        return release.status
    if release.pending:
        return f"{release.pending} requested, waiting for the worker"
    if release.status == "paused":
        return "paused: waiting for a person (r resume, a abort, p promote)"
    if release.next_evaluation is None:
        return "no evaluation scheduled"
    left = (release.next_evaluation - (now or datetime.now(UTC))).total_seconds()
    if left <= 0:
        return "evaluating…"
    return f"next evaluation in {fmt.duration(left + 0.999)}"


def headline(release: CanaryRelease) -> str:
    """``canary v3 beside stable v2: running · 25% · step 2/4 · failures 0/2``."""
    r = release
    return (
        f"canary v{r.canary_version} beside stable v{fmt.version(r.stable_version)}: "
        f"{r.status} · {r.weight:g}% · step {r.step}/{len(r.steps)} · "
        f"failures {r.failures}/{r.failure_limit}"
    )


def panel(release: CanaryRelease, now: datetime | None = None) -> str:
    """The selected deployment's canary, in full; a finished one in a line."""
    r = release
    if r.finished:
        ended = r.updated.astimezone().strftime("%H:%M:%S")
        return f"{headline(r)} (finished {ended}) — {r.last}"
    steps = " → ".join(f"{w:g}%" for w in r.steps)
    lines = [
        f"{headline(r)} · {countdown(r, now)}",
        f"  steps {steps}, every {fmt.span(r.interval)}, figures from {r.figures_source}",
    ]
    for check in r.checks:
        figures = check.figures or "not evaluated yet"
        lines.append(f"  {check.mark} {check.check:<28} {figures}")
    if r.last:
        lines.append(f"  last: {r.last}")
    if r.problem:
        lines.append(f"  problem: {r.problem}")
    if not r.worker_running and not r.pending:
        lines.append("  no analysis worker is running: r resumes it (starts one)")
    return "\n".join(lines)


def side_by_side(release: CanaryRelease) -> str:
    """The monitor's section: the stable's and the canary's figures at the last evaluation."""
    r = release
    title = (
        f"canary of {r.deployment}: v{r.canary_version} at {r.weight:g}% beside stable "
        f"v{fmt.version(r.stable_version)} ({r.status}) · figures of its last evaluation "
        f"(over {fmt.span(r.interval)}, from {r.figures_source})"
    )
    figures = r.figures or {}
    if not any(figures.get(role) for role in ("canary", "stable")):
        return f"{title}\n  no evaluation yet"
    roles = (
        (f"stable v{fmt.version(r.stable_version)}", figures.get("stable") or {}),
        (f"canary v{r.canary_version}", figures.get("canary") or {}),
    )
    width = max(len(name) for name, _ in roles) + 2
    cells = [[show(values.get(metric)) for metric, _, show in COMPARED] for _, values in roles]
    widths = [
        max(len(heading), *(len(row[i]) for row in cells)) + 2
        for i, (_, heading, _) in enumerate(COMPARED)
    ]
    headings = [heading for _, heading, _ in COMPARED]
    header = " " * width + "".join(h.rjust(w) for h, w in zip(headings, widths, strict=True))
    rows = [
        name.ljust(width) + "".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
        for (name, _), row in zip(roles, cells, strict=True)
    ]
    return "\n".join([title, "  " + header, *("  " + row for row in rows)])
