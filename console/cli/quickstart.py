"""`mlops quickstart`: from nothing to a served model with latency, drift and an alert on screen.

The flow itself is ``backends.lifecycle.quickstart``: train two versions of the iris model,
promote one through the gate, serve it (in Docker when an engine and a base image are there,
else as a local process), start a Prometheus with the shipped rules when one is installed, send
traffic with a drifted slice. This command shows its steps (on stderr) and opens the console
on the Monitor screen; `--json` prints what it left running instead. `--stop` ends what this
directory's quickstart started, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from console.cli.common import backend_errors, print_json, refuse_if_read_only, to_jsonable
from console.cli.progress import Steps, step_count


def quickstart(
    no_console: Annotated[
        bool, typer.Option("--no-console", help="Do everything but open the console.")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Serve as a local process even if Docker is there.")
    ] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop what an earlier quickstart started, and exit.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="What it left running as one document on stdout (stable keys), the steps on "
            "stderr; implies --no-console.",
        ),
    ] = False,
) -> None:
    """Train, register, promote, serve, send traffic with drift, and open the Monitor."""
    refuse_if_read_only("quickstart")
    from backends.lifecycle import quickstart as qs
    from backends.lifecycle.handles import Handles
    from backends.mlflow.training import absolute_tracking_uri
    from console.config import Settings, default_project

    settings = Settings.from_env()
    tracking = absolute_tracking_uri(settings.tracking_uri)
    with Handles(tracking, settings.docker_host, docker_timeout=10) as h:
        if stop:
            stopped = qs.stop(h)
            if as_json:
                print_json({"stopped": stopped})
            else:
                typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
            return
        with backend_errors(), Steps() as steps:
            steps.line(f"tracking store: {tracking}")
            outcome = qs.run(h, default_project(), local=local, on_step=_step_printer(steps))
    if as_json:
        print_json({"tracking_uri": tracking, **to_jsonable(outcome)})
        return
    url, prom_url, am_url = outcome.url, outcome.prometheus_url, outcome.alertmanager_url
    typer.echo("")
    typer.echo(
        f"  watch it:   mlops monitor --target {url}"
        + (f"   (or PROMETHEUS_URL={prom_url} mlops monitor)" if prom_url else "")
    )
    if am_url:
        typer.echo(f"  alerts:     ALERTMANAGER_URL={am_url} mlops alerts list")
    typer.echo(f"  retrain:    mlops retrain --target {url} --if-drift --data NEW.csv")
    typer.echo("  stop it:    mlops quickstart --stop")
    if no_console:
        return
    from console.app import MlopsApp

    # A local process is no deployment the engine lists: the Monitor watches it by address
    # (without Prometheus it is the only way it can be seen; with it, the rows carry it).
    targets = settings.monitor_targets
    if not outcome.deployment:
        targets = (*targets, f"quickstart={url}")
    app_settings = Settings(
        tracking_uri=tracking,
        docker_host=settings.docker_host,
        prometheus_url=prom_url or settings.prometheus_url,
        alertmanager_url=am_url or settings.alertmanager_url,
        context=settings.context,
        monitor_targets=targets,
    )
    MlopsApp(app_settings, start_mode="monitor").run()


def _step_printer(steps: Steps) -> Callable[[str], None]:
    """The quickstart's lines: "[N/6] ..." is a step of six (a bar on a terminal); an indented
    line belongs to the step before it: an image build's own steps are shown beside it, and
    anything else (a run's accuracy, where Alertmanager listens) stays, below its step."""

    def on_step(line: str) -> None:
        if not line.startswith(" ") and step_count(line) is not None:
            steps.step(line)
        elif line.lstrip().startswith(("Step ", "building ", "no image for ")):
            steps.detail(line)
        else:
            steps.note(line)

    return on_step
