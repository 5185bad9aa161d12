"""`mlops runs list|show|compare|logs`: find, inspect and compare runs."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from console.cli.common import backend_errors, fail, print_json
from console.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from backends.records import RunComparison, RunDetail, RunListing, RunSummary

app = typer.Typer(
    help="Find, inspect and compare runs (MLflow search syntax).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DEFAULT_EXPERIMENT = "iris"
MAX_METRIC_COLUMNS = 6
MAX_PARAM_COLUMNS = 4
SPARK = "▁▂▃▄▅▆▇█"


def _tracking_uri() -> str:
    from console.config import Settings

    return Settings.from_env().tracking_uri


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max(0.0, (datetime.now(tz=UTC) - moment).total_seconds())
    if seconds < 60:
        span = f"{seconds:.1f} s ago" if seconds < 10 else f"{seconds:.0f} s ago"
    elif seconds < 3600:
        span = f"{seconds / 60:.0f} min ago"
    elif seconds < 86400:
        span = f"{seconds / 3600:.1f} h ago"
    else:
        span = f"{seconds / 86400:.1f} d ago"
    return f"{moment.astimezone():%H:%M:%S} ({span})"


def _time(moment: datetime | None) -> str:
    return f"{moment.astimezone():%Y-%m-%d %H:%M}" if moment else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}" if abs(value) >= 1e4 or (value and abs(value) < 1e-3) else f"{value:.4f}"


# ------------------------------------------------------------------ list


@app.command("list")
def list_(
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment",
            "-e",
            help="Experiment name or id (default: $MLFLOW_EXPERIMENT_NAME, else iris).",
        ),
    ] = None,
    filter_: Annotated[
        str,
        typer.Option(
            "--filter",
            "-f",
            metavar="EXPR",
            help='MLflow search filter, e.g. "metrics.accuracy > 0.9".',
        ),
    ] = "",
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by", "-o", metavar="EXPR", help='e.g. "metrics.accuracy DESC" (repeatable).'
        ),
    ] = None,
    max_: Annotated[
        int, typer.Option("--max", "-n", min=0, help="At most N runs; 0 lists every match.")
    ] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Stable, machine-readable output.")
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Resync the local run index fully first.")
    ] = False,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Ask the server directly (slow on big experiments).")
    ] = False,
) -> None:
    """List runs, newest first unless --order-by; fast on big experiments (local index)."""
    from backends.tracking import list_runs

    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    with backend_errors():
        listing = list_runs(
            _tracking_uri(),
            name,
            filter_string=filter_,
            order_by=order_by or [],
            max_results=max_ or None,
            use_index=not no_index,
            sync="full" if refresh else "now",
            on_full_sync=lambda: typer.echo(
                "syncing the local run index fully (first use, --refresh, or hourly): "
                "this takes as long as listing every run from the server...",
                err=True,
            ),
        )
    if as_json:
        _print_listing_json(listing)
        return
    _print_listing(listing, order_by or [])


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


def _print_listing_json(listing: RunListing) -> None:
    import json

    # The same document print_json writes (sorted keys, indent 2), without its generic walk.
    # One write: json.dump to a stream writes thousands of small chunks.
    sys.stdout.write(
        json.dumps(listing_json(listing), indent=2, sort_keys=True, default=str) + "\n"
    )


def _columns(listing: RunListing, order_by: list[str]) -> tuple[list[str], list[str]]:
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


def _print_listing(listing: RunListing, order_by: list[str]) -> None:
    metric_cols, param_cols = _columns(listing, order_by)
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
            f"local index synced {_ago(listing.synced_at)}; "
            f"last full resync {_ago(listing.verified_at)} "
            "(later edits to finished runs show after --refresh)\n"
        )
    else:
        out.write(f"asked the server at {_ago(listing.synced_at)}\n")
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
            _time(r.start_time),
            _duration(r.duration_seconds),
            *(_num(r.metrics.get(k)) for k in metric_cols),
            *(r.params.get(k, "-") for k in param_cols),
        ]
        for r in listing.runs
    ]
    numeric = set(range(5, 5 + len(metric_cols)))
    _write_table(headers, rows, numeric)
    if listing.more:
        out.write(
            f"… {'more' if listing.matched is None else listing.matched - shown} more: --max N\n"
        )


def _write_table(headers: list[str], rows: list[list[str]], numeric: set[int]) -> None:
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


# ------------------------------------------------------------------ show


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Stable, machine-readable output.")
    ] = False,
) -> None:
    """Show a run: status, duration, params, metrics, tags, data sets, artifacts, model, commit."""
    from backends.tracking import show_run

    with backend_errors():
        detail = show_run(_tracking_uri(), run_id)
    if as_json:
        print_json(detail)
        return
    _print_detail(detail)


def _print_detail(detail: RunDetail) -> None:
    run = detail.run
    lines = [
        f"run         {run.run_id}  {run.name}",
        f"experiment  {detail.experiment_name} (id {run.experiment_id})",
        f"status      {run.status}"
        + ("" if run.lifecycle_stage == "active" else f" ({run.lifecycle_stage})"),
        f"started     {_time(run.start_time)}   duration {_duration(run.duration_seconds)}",
        f"user        {run.user or '-'}",
        f"source      {detail.source or '-'}",
        f"git commit  {detail.git_commit or '-'}",
        f"artifacts   {detail.artifact_uri or '-'}",
    ]
    sections: list[tuple[str, list[str]]] = [
        ("params", [f"{k} = {v}" for k, v in sorted(run.params.items())]),
        ("metrics (latest)", [f"{k} = {_num(v)}" for k, v in sorted(run.metrics.items())]),
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


# ------------------------------------------------------------------ compare


@app.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID", help="2 to 200 run ids.")],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", "-m", metavar="NAME", help="Compare only these metrics (repeatable)."
        ),
    ] = None,
    direction: Annotated[
        list[str] | None,
        typer.Option(
            "--direction",
            metavar="NAME=max|min",
            help="NAME=max or NAME=min: which way is better for a metric (repeatable).",
        ),
    ] = None,
    all_params: Annotated[
        bool, typer.Option("--all-params", help="List the params that agree too.")
    ] = False,
    history: Annotated[
        bool,
        typer.Option("--history/--no-history", help="Fetch metric histories (for plots)."),
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Stable, machine-readable output.")
    ] = False,
) -> None:
    """Compare runs: differing params, metrics with the best marked, data digests, histories."""
    from backends.tracking import compare_runs

    directions: dict[str, Any] = {}
    for item in direction or []:
        key, _, way = item.rpartition("=")
        if not key or way not in ("max", "min"):
            fail(f"--direction takes NAME=max or NAME=min, not {item!r}", ExitCode.USAGE)
        directions[key] = way
    with backend_errors():
        comparison = compare_runs(
            _tracking_uri(), run_ids, metrics=metric, directions=directions, history=history
        )
    if as_json:
        print_json(comparison)
        return
    _print_comparison(comparison, all_params)


def _spark(values: list[float]) -> str:
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:
        return ""
    low, high = min(finite), max(finite)
    width = 16
    step = max(1, len(finite) // width)
    sampled = finite[::step][:width]
    span = (high - low) or 1.0
    return "".join(SPARK[int((v - low) / span * (len(SPARK) - 1))] for v in sampled)


def _label(run: RunSummary) -> str:
    return f"{run.run_id[:8]} {run.name}".strip()


def _print_comparison(c: RunComparison, all_params: bool) -> None:
    out = sys.stdout
    out.write(f"comparing {len(c.runs)} runs\n\n")
    metric_cols = [m.key for m in c.metrics]
    headers = ["RUN", *[p.key for p in c.params_differ], *metric_cols]
    rows = []
    for i, run in enumerate(c.runs):
        cells = [_label(run)]
        cells += ["-" if (v := p.values[i]) is None else v for p in c.params_differ]
        for m in c.metrics:
            mark = " ★" if i in m.best else ("  " if m.best else "")
            cells.append(_num(m.values[i]) + mark)
        rows.append(cells)
    numeric = set(range(1 + len(c.params_differ), len(headers)))
    _write_table(headers, rows, numeric)
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
            out.write(f"  {_label(run)}: {sets}\n")
    long = {
        key: series
        for key, series in c.histories.items()
        if any(s.total_points > 1 for s in series)
    }
    if long:
        out.write("histories:\n")
        for key, series in long.items():
            for run, s in zip(c.runs, series, strict=True):
                spark = _spark([p.value for p in s.points])
                out.write(f"  {key:<16} {_label(run):<30} {s.total_points:>6} points  {spark}\n")


# ------------------------------------------------------------------ logs


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="A run started by `mlops train`.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until training ends.")
    ] = False,
) -> None:
    """Print a training log (the local file while it runs, else the run's artifact)."""
    from backends.training import LOG_TRAILER, log_path_for, log_writer_alive, read_log

    local = log_path_for(run_id)
    if follow and local.is_file():
        _follow(local, LOG_TRAILER, lambda: log_writer_alive(local), lambda: _finished(run_id))
        return
    with backend_errors():
        text, _where = read_log(_tracking_uri(), run_id)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def _finished(run_id: str) -> bool:
    from backends.errors import BackendError
    from backends.tracking import get_run

    try:
        return get_run(_tracking_uri(), run_id).status in ("FINISHED", "FAILED", "KILLED")
    except BackendError:
        return False


def _follow(
    path: Path,
    trailer: str,
    writer_alive: Callable[[], bool | None],
    finished: Callable[[], bool],
) -> None:
    """Print the file and whatever is appended, until the trailer line. Should the writer die
    without writing it, stop once the file is drained; for a log without the writer's pid,
    stop after a minute of silence once the run has ended."""
    quiet_since = time.monotonic()
    checked = quiet_since
    writer_gone = False
    with path.open(encoding="utf-8", errors="replace") as handle:
        while True:
            line = handle.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
                quiet_since = time.monotonic()
                if line.startswith(trailer):
                    return
                continue
            if writer_gone:
                sys.stdout.write("(the training process is gone; its log has no closing line)\n")
                return
            now = time.monotonic()
            if now - checked > 2:
                checked = now
                alive = writer_alive()
                if alive is False:
                    writer_gone = True  # read what it wrote last, then stop
                    continue
                if alive is None and now - quiet_since > 60 and finished():
                    sys.stdout.write("(the run has ended; its log has no closing line)\n")
                    return
            time.sleep(0.2)
