"""How `mlops runs` prints: listings (a plain table, or stable JSON), a run's details, and a
comparison with sparklines; kept apart from the commands that fetch them."""

from __future__ import annotations

import math
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from console import format as fmt

if TYPE_CHECKING:
    from rich.console import Console

    from backends.records import RunComparison, RunDetail, RunListing, RunSummary

MAX_METRIC_COLUMNS = 6
MAX_PARAM_COLUMNS = 4
SPARK = "▁▂▃▄▅▆▇█"


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def listing_json(listing: RunListing) -> dict[str, Any]:
    """``to_jsonable(listing)``, built directly: the generic walk costs ~0.5 s on 10,000 runs."""
    from dataclasses import fields

    def run_json(r: RunSummary) -> dict[str, Any]:
        return {
            "run_id": r.run_id,
            "experiment_id": r.experiment_id,
            "name": r.name,
            "status": r.status,
            "start_time": r.start_time.isoformat() if r.start_time else None,
            "end_time": r.end_time.isoformat() if r.end_time else None,
            "user": r.user,
            "params": r.params,
            "metrics": r.metrics,
            "tags": r.tags,
            "datasets": [
                {
                    "name": d.name,
                    "digest": d.digest,
                    "context": d.context,
                    "source_type": d.source_type,
                }
                for d in r.datasets
            ],
            "lifecycle_stage": r.lifecycle_stage,
        }

    out: dict[str, Any] = {}
    for f in fields(listing):
        value = getattr(listing, f.name)
        if f.name == "runs":
            out["runs"] = [run_json(r) for r in value]
        elif isinstance(value, datetime):
            out[f.name] = value.isoformat()
        else:
            out[f.name] = value
    return out


def print_listing_json(listing: RunListing) -> None:
    import json

    # The same document print_json writes (sorted keys, indent 2), without its generic walk.
    # One write: json.dump to a stream writes thousands of small chunks.
    sys.stdout.write(
        json.dumps(listing_json(listing), indent=2, sort_keys=True, default=str) + "\n"
    )


def columns(listing: RunListing, order_by: list[str]) -> tuple[list[str], list[str]]:
    """Metric and param columns worth showing: the ordered-by key first, then the rest."""
    metrics: dict[str, int] = {}
    params: dict[str, set[str]] = {}
    for run in listing.runs:
        for key in run.metrics:
            metrics[key] = metrics.get(key, 0) + 1
        for key, value in run.params.items():
            params.setdefault(key, set()).add(value)
    chosen_m = sorted(metrics, key=lambda k: (-metrics[k], k))[:MAX_METRIC_COLUMNS]
    varying = sorted(k for k, v in params.items() if len(v) > 1)
    chosen_p = varying[:MAX_PARAM_COLUMNS]
    for term in order_by:
        head = term.split()[0] if term.split() else ""
        kind, _, key = head.partition(".")
        key = key.strip('`"')
        if kind in ("metric", "metrics") and key in metrics and key not in chosen_m:
            chosen_m = [key, *chosen_m[: MAX_METRIC_COLUMNS - 1]]
        if kind in ("param", "params") and key in params and key not in chosen_p:
            chosen_p = [key, *chosen_p[: MAX_PARAM_COLUMNS - 1]]
    return chosen_m, chosen_p


def print_listing(listing: RunListing, order_by: list[str]) -> None:
    metric_cols, param_cols = columns(listing, order_by)
    shown = len(listing.runs)
    if listing.matched is not None:
        count = (
            f"{listing.matched} run{'s' if listing.matched != 1 else ''} "
            f"match{'es' if listing.matched == 1 else ''}"
            + (f", showing {shown}" if listing.more else "")
        )
    else:
        count = f"showing {shown} runs" + (
            " (more on the server: raise --max)" if listing.more else ""
        )
    out = sys.stdout
    out.write(f"experiment {listing.experiment_name} (id {listing.experiment_id}) · {count}\n")
    if listing.source == "index":
        out.write(
            f"local index synced {fmt.ago(listing.synced_at)}; "
            f"last full resync {fmt.ago(listing.verified_at)} "
            "(later edits to finished runs show after --refresh)\n"
        )
    else:
        out.write(f"asked the server at {fmt.ago(listing.synced_at)}\n")
    if listing.note:
        out.write(f"note: {listing.note}\n")
    if not listing.runs:
        out.write("no runs\n")
        return
    headers = ["RUN ID", "NAME", "STATUS", "STARTED", "DURATION", *metric_cols, *param_cols]
    rows = [
        [
            r.run_id,
            r.name,
            r.status,
            fmt.when(r.start_time),
            fmt.duration(r.duration_seconds, tenths=True),
            *(fmt.metric(r.metrics.get(k)) for k in metric_cols),
            *(r.params.get(k, "-") for k in param_cols),
        ]
        for r in listing.runs
    ]
    numeric = set(range(5, 5 + len(metric_cols)))
    write_table(headers, rows, numeric)
    if listing.more:
        out.write(
            f"… {'more' if listing.matched is None else listing.matched - shown} more: --max N\n"
        )


def write_table(headers: list[str], rows: list[list[str]], numeric: set[int]) -> None:
    """A plain aligned table: fast for 10,000 rows, copy-paste friendly, no wrapping."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], min(len(cell), 40))

    def fmt(row: list[str]) -> str:
        cells = []
        for i, cell in enumerate(row):
            cell = cell if len(cell) <= 40 else cell[:39] + "…"
            cells.append(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]))
        return "  ".join(cells).rstrip()

    sys.stdout.write("\n".join([fmt(headers), *map(fmt, rows)]) + "\n")


def print_detail(detail: RunDetail) -> None:
    run = detail.run
    lines = [
        f"run         {run.run_id}  {run.name}",
        f"experiment  {detail.experiment_name} (id {run.experiment_id})",
        f"status      {run.status}"
        + ("" if run.lifecycle_stage == "active" else f" ({run.lifecycle_stage})"),
        f"started     {fmt.when(run.start_time)}   "
        f"duration {fmt.duration(run.duration_seconds, tenths=True)}",
        f"user        {run.user or '-'}",
        f"source      {detail.source or '-'}",
        f"git commit  {detail.git_commit or '-'}",
        f"artifacts   {detail.artifact_uri or '-'}",
    ]
    sections: list[tuple[str, list[str]]] = [
        ("params", [f"{k} = {v}" for k, v in sorted(run.params.items())]),
        ("metrics (latest)", [f"{k} = {fmt.metric(v)}" for k, v in sorted(run.metrics.items())]),
        (
            "data sets",
            [
                f"{d.name}  digest {d.digest}" + (f"  ({d.context})" if d.context else "")
                for d in run.datasets
            ],
        ),
        (
            "models",
            [
                f"{m.name}  {m.uri}" + (f"  [{', '.join(m.flavors)}]" if m.flavors else "")
                for m in detail.models
            ],
        ),
        (
            "artifact files",
            [
                f"{a.path}{'/' if a.is_dir else ''}"
                + (f"  {a.size} bytes" if a.size is not None and not a.is_dir else "")
                for a in detail.artifacts
            ],
        ),
        ("tags", [f"{k} = {v}" for k, v in sorted(run.tags.items())]),
    ]
    for title, items in sections:
        lines.append(f"\n{title}:" if items else f"\n{title}: none")
        lines += [f"  {item}" for item in items]
    sys.stdout.write("\n".join(lines) + "\n")


def spark(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:
        return ""
    low, high = min(finite), max(finite)
    width = 16
    step = max(1, len(finite) // width)
    sampled = finite[::step][:width]
    span = (high - low) or 1.0
    return "".join(SPARK[int((v - low) / span * (len(SPARK) - 1))] for v in sampled)


def label(run: RunSummary) -> str:
    return f"{run.run_id[:8]} {run.name}".strip()


def print_comparison(c: RunComparison, all_params: bool) -> None:
    out = sys.stdout
    out.write(f"comparing {len(c.runs)} runs\n\n")
    metric_cols = [m.key for m in c.metrics]
    headers = ["RUN", *[p.key for p in c.params_differ], *metric_cols]
    rows = []
    for i, run in enumerate(c.runs):
        cells = [label(run)]
        cells += ["-" if (v := p.values[i]) is None else v for p in c.params_differ]
        for m in c.metrics:
            mark = " ★" if i in m.best else ("  " if m.best else "")
            cells.append(fmt.metric(m.values[i]) + mark)
        rows.append(cells)
    numeric = set(range(1 + len(c.params_differ), len(headers)))
    write_table(headers, rows, numeric)
    directions = ", ".join(
        f"{m.key}: {'higher' if m.direction == 'max' else 'lower'} is better"
        for m in c.metrics
        if m.direction != "unknown"
    )
    unknown = [m.key for m in c.metrics if m.direction == "unknown"]
    out.write("\n★ best" + (f" ({directions})" if directions else ""))
    if unknown:
        out.write(f"; no direction known for {', '.join(unknown)} (--direction NAME=max|min)")
    out.write("\n")
    if not c.params_differ:
        out.write("params: all equal\n")
    if c.params_agree:
        if all_params:
            out.write("params that agree:\n")
            for p in c.params_agree:
                out.write(f"  {p.key} = {p.values[0]}\n")
        else:
            keys = ", ".join(p.key for p in c.params_agree)
            out.write(f"params that agree ({len(c.params_agree)}): {keys}  (--all-params)\n")
    if c.same_data is None:
        out.write("data: cannot tell (not every run recorded its data set)\n")
    else:
        out.write("data: " + ("same data in every run" if c.same_data else "DIFFERENT data") + "\n")
    if any(run.datasets for run in c.runs):
        for run in c.runs:
            sets = ", ".join(f"{d.name}@{d.digest}" for d in run.datasets) or "-"
            out.write(f"  {label(run)}: {sets}\n")
    long = {
        key: series
        for key, series in c.histories.items()
        if any(s.total_points > 1 for s in series)
    }
    if long:
        out.write("histories:\n")
        for key, series in long.items():
            for run, s in zip(c.runs, series, strict=True):
                line = spark([p.value for p in s.points])
                out.write(f"  {key:<16} {label(run):<30} {s.total_points:>6} points  {line}\n")
