"""A gate report as JSON (for machines and the run's artifacts) and as a readable table."""

from __future__ import annotations

import dataclasses
from typing import Any

from backends.records import PolicyCheck, PolicyReport, SliceFigure

__all__ = ["brief", "from_dict", "render", "report_dict"]

_MARK = {"pass": "pass", "fail": "FAIL", "undecided": "UNDECIDED"}


def report_dict(report: PolicyReport) -> dict[str, Any]:
    found = dataclasses.asdict(report)
    found["format"] = "mlops-gate-report/1"
    found["counts"] = report.counts()
    return found


def from_dict(data: dict[str, Any]) -> PolicyReport:
    """A report read back from its JSON (the run artifact, the version tag)."""
    fields = {f.name for f in dataclasses.fields(PolicyReport)}
    values = {k: v for k, v in data.items() if k in fields}
    values["checks"] = tuple(PolicyCheck(**c) for c in data.get("checks", ()))
    values["worst_slices"] = tuple(SliceFigure(**s) for s in data.get("worst_slices", ()))
    values["unjudged"] = tuple(SliceFigure(**s) for s in data.get("unjudged", ()))
    return PolicyReport(**values)


def _figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _slice_value(figure: SliceFigure, digits: int = 4) -> str:
    """A slice's figure, or n/a where it has none (null in the JSON): never a made-up 0."""
    return "n/a" if figure.value is None else f"{figure.value:.{digits}g}"


def render(report: PolicyReport) -> str:
    """The report as a person reads it: the data first, then one line per check."""
    counts = report.counts()
    verdict = "PASSED" if report.passed else "FAILED"
    undecided = "pass" if report.undecided_passes else "fail"
    lines = [
        f"gate policy {report.policy}: {verdict} "
        f"({counts['pass']} pass, {counts['fail']} fail, {counts['undecided']} undecided; "
        f"undecided counts as {undecided})",
        f"judged on {report.dataset} ({report.rows} rows, digest {report.digest or 'unknown'}); "
        f"{report.confidence:.0%} intervals from {report.resamples} bootstrap resamples",
    ]
    if report.champion_version is None:
        lines.append("no version holds the alias: nothing to compare with")
    else:
        lines.append(f"compared with version {report.champion_version} on the same rows")
    rows = [("verdict", "check", "value", "interval", "threshold", "rows")]
    for c in report.checks:
        interval = "—" if c.low is None or c.high is None else f"[{c.low:.4g}, {c.high:.4g}]"
        rows.append(
            (_MARK[c.verdict], c.name, _figure(c.value), interval, f"{c.threshold:g}", str(c.rows))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    details = [c for c in report.checks if c.detail]
    if details:
        lines.append("")
        lines += [f"{c.name}: {c.detail}" for c in details]
    if report.worst_slices:
        lines.append("")
        lines.append("worst slices:")
        lines += [
            f"  {s.slice}: {s.metric} {_slice_value(s)} ({s.rows} rows)"
            for s in report.worst_slices
        ]
    if report.unjudged:
        lines.append("")
        lines.append("too small to judge (reported, not judged):")
        lines += [
            f"  {s.slice}: {s.rows} rows, {s.metric} {_slice_value(s)}" for s in report.unjudged
        ]
    return "\n".join(lines) + "\n"


def brief(report: PolicyReport, limit: int = 40) -> str:
    """The report as a dialog shows it: the verdict, the data, every check (what did not pass
    first), the worst slices; the table with every detail is on the run (gate/report.txt)."""
    counts = report.counts()
    lines = [
        f"policy: {'PASSED' if report.passed else 'FAILED'} — {counts['pass']} pass, "
        f"{counts['fail']} fail, {counts['undecided']} undecided",
        f"on {report.rows} rows of {report.dataset} (digest {report.digest or 'unknown'}), "
        f"{report.confidence:.0%} intervals",
    ]
    if report.champion_version is not None:
        lines.append(f"compared with version {report.champion_version} on the same rows")
    order = {"fail": 0, "undecided": 1, "pass": 2}
    ranked = sorted(report.checks, key=lambda c: order[c.verdict])
    for c in ranked[:limit]:
        interval = "" if c.low is None or c.high is None else f" [{c.low:.3g}, {c.high:.3g}]"
        lines.append(f"  {_MARK[c.verdict]} {c.name}: {_figure(c.value)}{interval}")
        if c.verdict != "pass" and c.kind in ("fairness", "champion") and c.detail:
            lines.append(f"      {c.detail}")  # the groups' figures, or both models'
    if len(ranked) > limit:
        lines.append(f"  … and {len(ranked) - limit} more (mlops models validate)")
    if report.worst_slices:
        worst = ", ".join(
            f"{s.slice} {_slice_value(s, 3)} (n={s.rows})" for s in report.worst_slices
        )
        lines.append(f"worst slices: {worst}")
    return "\n".join(lines)
