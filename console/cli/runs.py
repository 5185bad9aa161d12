"""`mlops runs list|show|compare|logs`: find, inspect and compare runs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from backends.defaults import DEFAULT_EXPERIMENTS
from console.cli import runs_output
from console.cli.common import JsonOpt, backend_errors, fail, print_json
from console.cli.exit_codes import ExitCode
from console.cli.progress import Steps

if TYPE_CHECKING:
    pass


app = typer.Typer(
    help="Find, inspect and compare runs (MLflow search syntax).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DEFAULT_EXPERIMENT = DEFAULT_EXPERIMENTS[0]


def _tracking_uri() -> str:
    from console.config import Settings

    return Settings.from_env().tracking_uri


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
    as_json: JsonOpt = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Resync the local run index fully first.")
    ] = False,
    no_index: Annotated[
        bool, typer.Option("--no-index", help="Ask the server directly (slow on big experiments).")
    ] = False,
) -> None:
    """List runs, newest first unless --order-by; fast on big experiments (local index)."""
    from backends.mlflow.runs import list_runs

    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    with backend_errors(), Steps() as steps:
        listing = list_runs(
            _tracking_uri(),
            name,
            filter_string=filter_,
            order_by=order_by or [],
            max_results=max_ or None,
            use_index=not no_index,
            sync="full" if refresh else "now",
            on_full_sync=lambda: steps.step(
                "syncing the local run index fully (first use, --refresh, or hourly): "
                "this takes as long as listing every run from the server..."
            ),
            # No total to make a bar of (the server does not say how many): a running count.
            on_fetched=lambda fetched: steps.status(f"{fetched:,} runs listed"),
        )
    if as_json:
        runs_output.print_listing_json(listing)
        return
    runs_output.print_listing(listing, order_by or [])


# ------------------------------------------------------------------ show


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a run: status, duration, params, metrics, tags, data sets, artifacts, model, commit."""
    from backends.mlflow.runs import show_run

    with backend_errors():
        detail = show_run(_tracking_uri(), run_id)
    if as_json:
        print_json(detail)
        return
    runs_output.print_detail(detail)


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
    as_json: JsonOpt = False,
) -> None:
    """Compare runs: differing params, metrics with the best marked, data digests, histories."""
    from backends.mlflow.compare import compare_runs

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
    runs_output.print_comparison(comparison, all_params)


# ------------------------------------------------------------------ logs


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="A run started by `mlops train`.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until training ends.")
    ] = False,
) -> None:
    """Print a training log (the local file while it runs, else the run's artifact)."""
    from backends.mlflow.training import LOG_TRAILER, log_path_for, log_writer_alive, read_log

    local = log_path_for(run_id)
    if follow and local.is_file():
        _follow(local, LOG_TRAILER, lambda: log_writer_alive(local), lambda: _finished(run_id))
        return
    with backend_errors():
        text, _where = read_log(_tracking_uri(), run_id)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def _finished(run_id: str) -> bool:
    from backends.errors import BackendError
    from backends.mlflow.runs import get_run

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
