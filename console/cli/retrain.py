"""`mlops retrain`: drift on a serving model → a new challenger, gated, waiting for approval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from console.cli.common import backend_errors, fail
from console.cli.exit_codes import ExitCode


def retrain(
    deployment: Annotated[
        str | None, typer.Argument(help="Deployment whose model to retrain (see deploy ps).")
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--target", help="A model server's base URL instead of a deployment."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="CSV to train on (features + target).")
    ] = None,
    eval_data: Annotated[
        Path | None,
        typer.Option(
            "--eval-data", help="Labelled CSV both models are scored on (default: --data)."
        ),
    ] = None,
    if_drift: Annotated[
        bool, typer.Option("--if-drift", help="Do nothing unless drift is above threshold.")
    ] = False,
    approve: Annotated[
        bool,
        typer.Option(
            "--approve",
            help="Promote the challenger to champion when it passes (the human approval).",
        ),
    ] = False,
    project: Annotated[
        Path | None,
        typer.Option("--project", help="MLflow Project (default: the serving run's own)."),
    ] = None,
    psi_threshold: Annotated[float, typer.Option(help="PSI above this is drift.")] = 0.2,
    ks_pvalue: Annotated[float, typer.Option(help="KS p-value below this is drift.")] = 0.05,
    tolerance: Annotated[
        float, typer.Option(help="How much worse than the champion the challenger may be.")
    ] = 0.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream training.")] = False,
) -> None:
    """Retrain the serving model on new data; register a gated challenger; promote on approval."""
    from backends import retraining
    from backends.registry import Registry
    from backends.training import Training, register_model
    from console.cli.train import default_project
    from console.config import Settings

    if (deployment is None) == (target is None):
        fail("name a DEPLOYMENT or give --target URL (one of them)", ExitCode.USAGE)
    settings = Settings.from_env()
    with backend_errors():
        url = target.rstrip("/") if target else _deployment_url(settings, deployment or "")
        state = retraining.serving_state(url, psi_threshold, ks_pvalue)
        typer.echo(
            f"serving {state.name or '?'} v{state.version or '?'} "
            f"(run {state.run_id[:12] or '?'}); {state.drift.summary()}"
        )
        if if_drift and not state.drift.drifted:
            typer.echo("no drift above threshold: nothing to retrain")
            return
        if data is None:
            fail("--data PATH is required to retrain", ExitCode.USAGE)
        if not state.name or not state.run_id:
            fail("the server does not say which registered model and run it serves", ExitCode.USAGE)

        from backends.mlflow_client import connect, translate_errors

        client = connect(settings.tracking_uri)
        with translate_errors(settings.tracking_uri):
            parent = client.get_run(state.run_id)
            experiment = client.get_experiment(parent.info.experiment_id).name
        project_dir = project or _project_of(parent.data.tags) or default_project()
        params = retraining.retrain_params(
            dict(parent.data.params), retraining.declared_params(project_dir), data
        )
        typer.echo(f"training {project_dir} with {params}")
        training = Training(
            project_dir, settings.tracking_uri, params=params, experiment=experiment
        )
        training.start()
        for line in training.lines():
            if not quiet:
                typer.echo(f"  {line}")
        status = training.finish(training.wait())
        if status != "FINISHED" or training.run_id is None:
            fail(
                f"training failed (run {training.run_id or 'not created'}: {status})",
                ExitCode.CHECK_FAILED,
            )
        run_id = training.run_id
        with translate_errors(settings.tracking_uri):
            client.set_tag(run_id, "mlops.retrain.parent_run_id", state.run_id)
            client.set_tag(run_id, "mlops.retrain.drift", retraining.drift_tag(state))
        version = register_model(settings.tracking_uri, run_id, state.name)
        typer.echo(f"registered {state.name} v{version.version} from run {run_id}")

        comparison = retraining.compare_on(
            settings.tracking_uri,
            f"models:/{state.name}/{state.version}",
            f"models:/{state.name}/{version.version}",
            eval_data or data,
            tolerance=tolerance,
        )
        typer.echo(comparison.summary())
        if not comparison.passed:
            fail(
                f"gate failed: {comparison.summary()}; the challenger alias did not move",
                ExitCode.CHECK_FAILED,
            )
        reason = (
            f"retrain of v{state.version} (run {state.run_id}): {state.drift.summary()}; "
            f"{comparison.summary()}"
        )
        registry = Registry(settings.tracking_uri)
        registry.promote(state.name, version.version, alias="challenger", reason=reason)
        typer.echo(f"challenger -> {state.name} v{version.version} (gate passed)")
        if not approve:
            typer.echo(
                f"waiting for approval: mlops models promote {state.name} "
                f"{version.version} --alias champion  (or in the console: Models, the version, p)"
            )
            return
        registry.promote(
            state.name, version.version, alias="champion", reason=f"approved: {reason}"
        )
        typer.echo(f"champion -> {state.name} v{version.version} (approved)")
        if deployment:
            typer.echo(
                f"roll it out: mlops deploy up {state.name}@champion --name {deployment}"
                "  (a --follow-alias deployment reloads by itself)"
            )


def _deployment_url(settings: object, name: str) -> str:
    from backends import containers, docker_engine

    client = docker_engine.connect(getattr(settings, "docker_host", None))
    found = containers.get_deployment(client, name)
    if not found.url:
        fail(f"deployment {name!r} publishes no address", ExitCode.NOT_FOUND)
    return found.url.replace("0.0.0.0", "127.0.0.1")


def _project_of(tags: dict[str, str]) -> Path | None:
    """The local project directory the serving run was launched from, if it still exists."""
    source = tags.get("mlflow.source.name", "")
    path = Path(source.removeprefix("file://")) if source else None
    return path if path is not None and (path / "MLproject").is_file() else None
