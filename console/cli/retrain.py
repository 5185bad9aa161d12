"""`mlops retrain`: drift on a serving model → a new challenger, gated, waiting for approval."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from console.cli.common import (
    JsonOpt,
    backend_errors,
    fail,
    print_json,
    refuse_if_read_only,
    to_jsonable,
)
from console.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from backends.lifecycle.handles import Handles
    from backends.lifecycle.retrain_steps import ServingState
    from backends.records import AliasEvent, RetrainOutcome


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
            help="Approve the challenger this run evaluated when it passes (you, the approver).",
        ),
    ] = False,
    project: Annotated[
        Path | None,
        typer.Option("--project", help="MLflow Project (default: the serving run's own)."),
    ] = None,
    psi_threshold: Annotated[
        float | None,
        typer.Option(help="PSI above this is drift (default: the model's drift reference's)."),
    ] = None,
    ks_pvalue: Annotated[
        float | None,
        typer.Option(help="KS p-value below this is drift (default: the reference's)."),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="How much worse than the champion the challenger may be.")
    ] = 0.0,
    from_log: Annotated[
        bool,
        typer.Option(
            "--from-log",
            help="Train on the deployment's logged rows whose labels came back (instead of "
            "--data); both models are scored on a held-out fifth of them.",
        ),
    ] = False,
    log_dir: Annotated[
        Path | None,
        typer.Option("--log-dir", help="The prediction log's directory (with --target)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not stream training.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Retrain the serving model on new data; register a gated challenger; promote on approval.

    With --json every step goes to stderr and stdout holds one document: what serves, its
    drift, whether it retrained, the challenger and its gate, and the approval (if any).
    """
    refuse_if_read_only("retrain")
    from backends.identity import current_user
    from backends.lifecycle import retrain as retrain_flow
    from backends.lifecycle.handles import Handles
    from backends.records import RetrainTrigger
    from console.config import Settings, default_project

    if (deployment is None) == (target is None):
        fail("name a DEPLOYMENT or give --target URL (one of them)", ExitCode.USAGE)
    settings = Settings.from_env()
    say = _Say(as_json)
    with (
        backend_errors(),
        Handles(settings.tracking_uri, settings.docker_host) as h,
        tempfile.TemporaryDirectory(prefix="mlops-from-log-") as work_dir,
    ):
        work = Path(work_dir)
        url = target.rstrip("/") if target else _deployment_url(h, deployment or "")
        state = retrain_flow.serving(h, url, psi=psi_threshold, ks_pvalue=ks_pvalue)
        say.serving = state
        if if_drift and not state.drift.drifted:
            say(f"serving {state.name} v{state.version}; {state.drift.summary()}")
            say("no drift above threshold: nothing to retrain")
            say.done()
            return
        run_tags: dict[str, str] = {}
        if from_log:
            if data is not None:
                fail("give --data or --from-log, not both", ExitCode.USAGE)
            if log_dir is None and deployment is None:
                fail("--from-log with --target needs --log-dir DIR", ExitCode.USAGE)
            data, held_out, run_tags = _from_log(h, deployment, log_dir, work, say)
            eval_data = eval_data or held_out
        if data is None:
            fail("--data PATH is required to retrain", ExitCode.USAGE)
        outcome = retrain_flow.retrain_challenger(
            h,
            state,
            data,
            fallback_project=default_project(),
            project=project,
            deployment=deployment or "",
            eval_data=eval_data,
            tolerance=tolerance,
            on_line=(lambda _line: None) if quiet else (lambda line: say(f"  {line}")),
            on_step=say,
            trigger=RetrainTrigger(source="cli", by=current_user()),
            run_tags=run_tags,
        )
        say.outcome = outcome
        if not outcome.gate_passed:
            say.done()  # the challenger and why the gate stopped it, then exit 1
            fail(outcome.gate, ExitCode.CHECK_FAILED)
        say(outcome.gate)
        name, version = outcome.model, outcome.challenger_version
        if not approve:
            say(
                f"waiting for approval: mlops models approve {name} {version}"
                "  (or in the console: Models, the version, A)"
            )
            say.done()
            return
        # The version this run evaluated, or nothing: approve refuses (exit 5) if the
        # challenger is no longer it, so a rival retraining's challenger is never promoted.
        _, event = h.registry().approve(name, version, reason="approved with retrain --approve")
        say.approved = event
        say(f"champion -> {name} v{event.to_version} (approved by {event.who})")
        if deployment:
            say(
                f"roll it out: mlops deploy up {name}@champion --name {deployment}"
                "  (a --follow-alias deployment reloads by itself)"
            )
        say.done()


class _Say:
    """Where `mlops retrain` talks: its lines on stdout, or, with --json, on stderr, and at
    the end (``done``) one document on stdout with the same keys whatever happened."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.serving: ServingState | None = None
        self.outcome: RetrainOutcome | None = None
        self.approved: AliasEvent | None = None

    def __call__(self, line: str) -> None:
        typer.echo(line, err=self.as_json)

    def done(self) -> None:
        """The document (with --json): called once what serves has been read."""
        if not self.as_json:
            return
        state = self.serving
        assert state is not None
        serving = {
            "url": state.url,
            "model": state.name,
            "version": state.version,
            "alias": state.alias,
            "run_id": state.run_id,
        }
        drift = to_jsonable(state.drift) | {
            "drifted": state.drift.drifted,
            "summary": state.drift.summary(),
        }
        print_json(
            {
                "serving": serving,
                "drift": drift,
                "retrained": self.outcome is not None,
                "outcome": self.outcome,
                "approved": self.approved,
            }
        )


def _deployment_url(h: Handles, name: str) -> str:
    from backends.docker import containers

    found = containers.get_deployment(h.docker(), name)
    if not found.url:
        fail(f"deployment {name!r} publishes no address", ExitCode.NOT_FOUND)
    return found.url


def _from_log(
    h: Handles, deployment: str | None, log_dir: Path | None, work: Path, say: _Say
) -> tuple[Path, Path, dict[str, str]]:
    """Training and held-out CSVs from the prediction log (the deployment's, copied out of its
    container, or ``log_dir``), and the tags that say which part of the log they are."""
    from backends.lifecycle import log_export

    if log_dir is None:
        assert deployment is not None
        log_dir = log_export.fetch_deployment_log(h, deployment, work / "log")
    sets = log_export.training_sets(log_dir, work / "sets")
    say(
        f"from the prediction log: {sets.rows} labelled rows ({sets.holdout_rows} held out "
        f"to score both models), {sets.tags()['mlops.retrain.log_window']}, answered by "
        f"version {', '.join(sets.versions)}"
    )
    return sets.train, sets.holdout, sets.tags()
