"""Retrain a serving model into a gated challenger: the one flow `mlops retrain` and the
console's monitor both run.

Read the server's drift (judged by the model version's own drift reference unless thresholds
are given), train the serving run's project on the new data with the run's own parameters, tag
and register the run, score champion and challenger, and move the ``challenger`` alias only
when the challenger is no worse. Champion never moves here: approving is a person's step
(`mlops models approve`, `--approve` in the CLI, `A` on the console's models screen), and the
version carries its gate report and trigger for them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from backends.defaults import CHALLENGER
from backends.errors import BackendError, GateFailed, InvalidInput
from backends.lifecycle import retrain_steps as retraining
from backends.lifecycle.handles import Handles
from backends.mlflow.approvals import TRIGGER_TAG, encode_trigger
from backends.mlflow.drift_reference import reference_thresholds
from backends.records import GateCheck, GateReport, GateResult, RetrainOutcome, RetrainTrigger

__all__ = ["project_of", "retrain_challenger", "serving"]


def project_of(tags: dict[str, str]) -> Path | None:
    """The local project directory the serving run was launched from, if it still exists."""
    source = tags.get("mlflow.source.name", "")
    # `file:///checkout#examples/iris` for a project inside a git checkout (MLflow's form).
    top, _, sub = source.removeprefix("file://").partition("#")
    path = Path(top, sub) if top else None
    return path if path is not None and (path / "MLproject").is_file() else None


def retrain_challenger(
    h: Handles,
    url: str | retraining.ServingState,
    data: Path,
    *,
    fallback_project: Path,
    project: Path | None = None,
    deployment: str = "",
    eval_data: Path | None = None,
    tolerance: float = 0.0,
    on_line: Callable[[str], object] = lambda _line: None,
    on_step: Callable[[str], object] | None = None,
    trigger: RetrainTrigger | None = None,
    run_tags: dict[str, str] | None = None,
) -> RetrainOutcome:
    """Train and register a challenger for the model served at ``url`` (or already read
    ``serving`` state); never touch champion. ``on_step`` hears each step's one-line summary
    (default: ``on_line``, which hears the training's own output too). The run and the
    version record ``trigger`` (what started it: an alert, or a person), and the version its
    gate report, for the person who approves it; ``run_tags`` go on the new run."""
    from backends.mlflow import gate_policy
    from backends.mlflow.client import translate_errors
    from backends.mlflow.training import Training

    tracking_uri = h.tracking_uri
    step = on_step or on_line
    state = url if isinstance(url, retraining.ServingState) else serving(h, url)
    step(f"serving {state.name} v{state.version}; {state.drift.summary()}")
    client = h.mlflow()
    with translate_errors(tracking_uri):
        parent = client.get_run(state.run_id)
        experiment = client.get_experiment(parent.info.experiment_id).name
    project = project or project_of(parent.data.tags) or fallback_project
    params = retraining.retrain_params(
        dict(parent.data.params), retraining.declared_params(project), data
    )
    step(f"training {project} with {params}")
    training = Training(project, tracking_uri, params=params, experiment=experiment)
    training.start()
    try:
        for line in training.lines():
            on_line(line)
    except BaseException:
        # The caller's line handler failed (or the worker is being torn down): the runner
        # must not train on unattended, nor its run stay RUNNING.
        training.interrupt()
        training.finish(training.wait(timeout=60))
        raise
    status = training.finish(training.wait())
    if status != "FINISHED" or training.run_id is None:
        raise BackendError(
            f"training failed (run {training.run_id or 'not created'}: {status}); "
            f"its log: {training.log_path}",
            title="Retraining failed",
        )
    run_id = training.run_id
    with translate_errors(tracking_uri):
        client.set_tag(run_id, "mlops.retrain.parent_run_id", state.run_id)
        client.set_tag(run_id, "mlops.retrain.drift", retraining.drift_tag(state))
        if trigger is not None:
            client.set_tag(run_id, TRIGGER_TAG, encode_trigger(trigger))
        for key, value in (run_tags or {}).items():  # e.g. the prediction log's window
            client.set_tag(run_id, key, value)
    version = h.registry().register(run_id, state.name)
    step(f"registered {state.name} v{version.version} from run {run_id}")
    with tempfile.TemporaryDirectory(prefix="mlops-retrain-") as tmp:
        # Judged on rows the challenger was not fitted to: the split its run kept back,
        # unless the operator named evaluation data (never the new training file itself,
        # when the project keeps a split back).
        held = None if eval_data else gate_policy.held_out_of(tracking_uri, run_id, tmp)
        comparison = retraining.compare_on(
            tracking_uri,
            f"models:/{state.name}/{state.version}",
            f"models:/{state.name}/{version.version}",
            eval_data or held or data,
            tolerance=tolerance,
            source="held-out" if held else "",
        )
    step(comparison.summary())
    if trigger is not None:
        h.registry().record_trigger(state.name, version.version, trigger)
    passed, gate, checks = _gate(h, state, version.version, comparison, trigger)
    report = GateReport(
        comparison=comparison.summary(),
        checks=checks,
        passed=passed,
        champion_version=state.version,
        at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    h.registry().record_gate(state.name, version.version, report, trigger)
    return RetrainOutcome(
        deployment=deployment,
        model=state.name,
        served_version=state.version,
        served_run_id=state.run_id,
        drift=state.drift.summary(),
        run_id=run_id,
        challenger_version=version.version,
        comparison=comparison.summary(),
        champion_score=comparison.champion,
        challenger_score=comparison.challenger,
        gate_passed=passed,
        gate=gate,
        log_path=str(training.log_path),
    )


def serving(
    h: Handles, url: str, *, psi: float | None = None, ks_pvalue: float | None = None
) -> retraining.ServingState:
    """What ``url`` serves; its drift judged by ``psi``/``ks_pvalue`` when given, else by the
    thresholds of the served version's own drift reference (what its server and the console
    use)."""
    state = retraining.serving_state(url)
    if not state.name or not state.run_id:
        raise InvalidInput("the server does not say which registered model and run it serves")
    if psi is None or ks_pvalue is None:
        limits = reference_thresholds(h.tracking_uri, state.name, state.version, client=h.mlflow())
        psi = limits.psi if psi is None else psi
        ks_pvalue = limits.ks_pvalue if ks_pvalue is None else ks_pvalue
    drift = retraining.DriftFigures(state.drift.features, psi, ks_pvalue)
    return replace(state, drift=drift)


def _gate(
    h: Handles,
    state: retraining.ServingState,
    version: int,
    comparison: retraining.Comparison,
    trigger: RetrainTrigger | None,
) -> tuple[bool, str, tuple[GateCheck, ...]]:
    """Move ``challenger`` when the challenger is no worse (and the registry's gate agrees):
    (passed, what happened, the gate's checks)."""
    compared = GateCheck("no worse than the champion", comparison.passed, comparison.summary())
    if not comparison.passed:
        return (
            False,
            f"gate failed: {comparison.summary()}; the challenger alias did not move",
            (compared,),
        )
    reason = (
        f"retrain of v{state.version} (run {state.run_id}): {state.drift.summary()}; "
        f"{comparison.summary()}"
    )
    if trigger is not None:
        reason += f"; trigger: {trigger.summary()}"
    seen: list[GateResult] = []
    try:
        h.registry().promote(
            state.name, version, alias=CHALLENGER, reason=reason, report=seen.append
        )
    except GateFailed as exc:
        checks = (compared, *(seen[0].checks if seen else ()))
        return False, f"{exc.message}; the challenger alias did not move", checks
    checks = (compared, *(seen[0].checks if seen else ()))
    return True, f"challenger -> {state.name} v{version} (gate passed)", checks
