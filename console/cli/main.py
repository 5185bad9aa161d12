"""The root `mlops` command. Resource sub-apps are joined here with ``add_typer``."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from console.cli import alerts as alerts_cli
from console.cli import context as context_cli
from console.cli import deploy as deploy_cli
from console.cli import feedback as feedback_cli
from console.cli import hooks as hooks_cli
from console.cli import images as images_cli
from console.cli import models
from console.cli import monitor as monitor_cli
from console.cli import quickstart as quickstart_cli
from console.cli import retrain as retrain_cli
from console.cli import runs as runs_cli
from console.cli import serve as serve_cli
from console.cli import train as train_cli

app = typer.Typer(
    name="mlops",
    help="Terminal operations console for ML in production (MLflow, Docker, Prometheus).\n\n"
    "Run with no arguments to open the console.",
    add_completion=True,
    no_args_is_help=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models.app, name="models")
app.add_typer(runs_cli.app, name="runs")
app.add_typer(monitor_cli.app, name="monitor")
app.command("train")(train_cli.train)
app.command("serve")(serve_cli.serve)
app.command("retrain")(retrain_cli.retrain)
app.command("quickstart")(quickstart_cli.quickstart)
app.add_typer(images_cli.app, name="image")
app.add_typer(deploy_cli.app, name="deploy")
app.add_typer(alerts_cli.app, name="alerts")
app.add_typer(hooks_cli.app, name="hooks")
app.add_typer(feedback_cli.app, name="feedback")
app.add_typer(context_cli.app, name="context")


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Refuse every mutating command (exit 2); also MLOPS_READ_ONLY=1.",
        ),
    ] = False,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="Run against this context of ~/.config/mlops-console/config.toml "
            "(any command; also MLOPS_CONTEXT). `mlops context list` shows them.",
        ),
    ] = None,
) -> None:
    """Open the console when no subcommand is given."""
    from backends.errors import BackendError
    from console.cli.common import fail, set_read_only, warn
    from console.cli.exit_codes import ExitCode
    from console.contexts import activate

    try:
        warn(activate(context).warning())
    except BackendError as exc:
        if ctx.invoked_subcommand != "context":
            fail(f"{exc.title}: {exc.message}", ExitCode.USAGE)
        warn(exc.message)  # `mlops context list|use` still run, to mend what is wrong
        if context:
            os.environ["MLOPS_CONTEXT"] = context  # what `context show` is asked about
    set_read_only(read_only)
    if ctx.invoked_subcommand is None:
        open_console(read_only=read_only, theme=None)


@app.command()
def version(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list backend library versions.")
    ] = False,
) -> None:
    """Print the mlops-console version."""
    from console import __version__

    typer.echo(f"mlops-console {__version__}")
    if verbose:
        # Package metadata, not imports: `mlops version -v` stays as fast as `mlops --help`.
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        for dist in ("mlflow", "textual", "docker", "prometheus-api-client", "fastapi"):
            try:
                typer.echo(f"{dist} {dist_version(dist)}")
            except PackageNotFoundError:
                typer.echo(f"{dist} (not installed)")


@app.command()
def console(
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Hide and refuse every mutating action.")
    ] = False,
    theme: Annotated[
        str | None,
        typer.Option(
            "--theme",
            help="A Textual theme (textual-dark, nord, gruvbox, ansi-dark, ...); "
            "default MLOPS_THEME. ctrl+p → 'Change theme' lists them.",
        ),
    ] = None,
) -> None:
    """Open the console (the same as `mlops` with no arguments; `--context NAME` works here
    as on every command)."""
    open_console(read_only=read_only, theme=theme)


def open_console(*, read_only: bool, theme: str | None) -> None:
    """Start the Textual app (the context is in the environment by now); textual is imported
    only here."""
    from console.app import MlopsApp
    from console.config import Settings

    MlopsApp(Settings.from_env(read_only=read_only, theme=theme), pinned_read_only=read_only).run()


def run() -> None:
    """Console-script entry point."""
    app()
