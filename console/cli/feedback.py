"""`mlops feedback push`: delayed ground-truth labels, in bulk, to a deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.cli.common import JsonOpt, backend_errors, fail, print_json, refuse_if_read_only
from console.cli.exit_codes import ExitCode

app = typer.Typer(
    help="Ground truth: labels for earlier predictions, joined by request id.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("push")
def push(
    file: Annotated[Path, typer.Argument(help="CSV with request_id, index (optional), truth.")],
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="The deployment that answered.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="A model server or router address instead of a deployment."),
    ] = None,
    truth_type: Annotated[
        str,
        typer.Option(
            "--truth-type", help="auto (integer, else number, else text), int, float, str, bool."
        ),
    ] = "auto",
    batch: Annotated[int, typer.Option("--batch", min=1, help="Labels per request.")] = 5000,
    as_json: JsonOpt = False,
) -> None:
    """Send labels for earlier predictions; each row is judged against the version that made
    the prediction. Exit 0 when every label was taken, 1 when some were unknown or invalid."""
    refuse_if_read_only("feedback push")
    if (deployment is None) == (url is None):
        fail("give one of --deployment NAME or --url URL", ExitCode.USAGE)
    from backends.lifecycle import feedback

    with backend_errors():
        # Read through once first: a bad line fails the command before any label is sent.
        if not sum(1 for _ in feedback.read_labels(file, truth_type)):
            fail(f"{file} holds no labels", ExitCode.USAGE)
        if url is None:
            from backends.lifecycle.handles import Handles
            from console.config import Settings

            settings = Settings.from_env()
            assert deployment is not None
            url = feedback.deployment_url(
                Handles(settings.tracking_uri, settings.docker_host), deployment
            )
        totals = feedback.push_labels(url, feedback.read_labels(file, truth_type), batch=batch)
    if as_json:
        print_json(totals)
    else:
        rate = totals.sent / totals.seconds if totals.seconds else 0.0
        typer.echo(
            f"{totals.sent} labels sent to {url} in {totals.seconds:.2f}s ({rate:,.0f}/s): "
            f"{totals.accepted} accepted, {totals.relabelled} relabelled, "
            f"{totals.not_found} not found, {totals.invalid} invalid"
        )
        for problem in totals.problems:
            typer.echo(f"  {problem}", err=True)
    if totals.not_found or totals.invalid:
        raise typer.Exit(int(ExitCode.CHECK_FAILED))
