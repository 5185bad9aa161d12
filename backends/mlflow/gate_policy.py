"""The gate policy's MLflow side: a candidate run's ``gate.yaml`` and evaluation set, the rows
each model predicts on, and the report logged back to the run.

Everything that can be refused is refused in ``prepare``, before a model predicts: a policy
that does not read, an evaluation set that cannot be found (or cannot be told from another),
is the run's own training data, lacks a column the policy slices or groups by, or does not
match the candidate's signature. The predictions themselves are made in the gate's child
processes (``backends.mlflow.gate``), never in the operator's. A run without a policy is
said in the gate too (``NoPolicy``): the other checks judge it alone, visibly.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.errors import BackendError, InvalidInput, NotFound
from backends.mlflow.client import connect, translate_errors
from backends.records import GateCheck, PolicyReport

__all__ = [
    "HELD_OUT_ARTIFACT",
    "POLICY_ARTIFACT",
    "REPORT_DIR",
    "NoPolicy",
    "Prepared",
    "held_out_of",
    "judge",
    "log_report",
    "prepare",
    "summary",
]

POLICY_ARTIFACT = "gate.yaml"  # copied to the run by `mlops train` from the project
HELD_OUT_ARTIFACT = "evaluation/held_out.csv"  # the split a training run keeps back
REPORT_DIR = "gate"  # report.json and report.txt, on the candidate's run
_CONTEXT = "mlflow.data.context"


@dataclass(frozen=True)
class Prepared:
    """A policy and its evaluation set, checked against the candidate's signature and ready:
    ``rows_for`` writes the rows a model predicts on (its signature's columns, in its order)."""

    policy: Any  # backends.policy.Policy
    frame: Any  # pandas.DataFrame: the evaluation rows with the target and every column
    dataset: str
    digest: str
    directory: str
    columns: list[str]  # the candidate's input columns, in its signature's order

    def rows_for(self, columns: list[str], name: str) -> str:
        path = Path(self.directory) / f"{name}-rows.json"
        # Row by row as objects: each column keeps its own type (a frame's to_numpy() would
        # make every int a float, which a signature of longs refuses).
        rows = self.frame[columns].astype(object).to_numpy().tolist()
        path.write_text(json.dumps({"columns": columns, "data": rows}, default=_plain))
        return str(path)

    def out_for(self, name: str) -> str:
        return str(Path(self.directory) / f"{name}-predictions.json")


@dataclass(frozen=True)
class NoPolicy:
    """Why a version has no policy to be judged by: the gate says so in a check of its own,
    which does not fail it (the other checks decide), so a missing gate.yaml is never silent."""

    why: str

    def check(self) -> GateCheck:
        return GateCheck(
            "policy",
            True,
            f"not judged by a policy: {self.why}; only the other checks (requirements, "
            "signature, format, load-and-predict) judged this version",
        )


def prepare(
    tracking_uri: str, run_id: str | None, candidate_path: str, into: str
) -> Prepared | NoPolicy:
    """The candidate run's policy and evaluation set, or why there is no policy."""
    from backends.policy import load_policy

    if not run_id:
        return NoPolicy("the version names no source run, so no gate.yaml travels with it")
    client = connect(tracking_uri)
    try:
        with translate_errors(tracking_uri):
            run = client.get_run(run_id)
            names = {a.path for a in client.list_artifacts(run_id)}
    except NotFound:
        return NoPolicy(f"its source run {run_id} is gone, and any gate.yaml with it")
    if POLICY_ARTIFACT not in names:
        return NoPolicy(
            f"run {run_id} has no {POLICY_ARTIFACT} (`mlops train` copies the project's; "
            "a plain `mlflow run` does not)"
        )
    directory = Path(into) / "policy"
    directory.mkdir(parents=True, exist_ok=True)
    with translate_errors(tracking_uri):
        local = client.download_artifacts(run_id, POLICY_ARTIFACT, str(directory))
    policy = load_policy(local, source=f"gate.yaml of run {run_id}")
    frame, dataset, digest = _evaluation_set(client, tracking_uri, run, policy, str(directory))
    _refuse_training_rows(run, digest, policy.source)
    _refuse_missing_columns(frame, policy)
    columns = _match_signature(frame, candidate_path, policy)
    return Prepared(policy, frame, dataset, digest, str(directory), columns)


def judge(
    prepared: Prepared,
    candidate: str,
    champion: str | None,
    champion_version: int | None,
    champion_problem: str = "",
) -> PolicyReport:
    """Evaluate the policy on the predictions written to ``candidate`` (and ``champion``)."""
    import numpy as np

    from backends.policy import EvaluationData, evaluate

    frame = prepared.frame
    target = prepared.policy.evaluation.target
    columns = {c: frame[c].to_numpy() for c in frame.columns if c != target}
    data = EvaluationData(
        columns=columns,
        truth=frame[target].to_numpy(),
        candidate=np.asarray(_predictions(candidate)),
        champion=None if champion is None else np.asarray(_predictions(champion)),
        champion_version=champion_version,
        dataset=prepared.dataset,
        digest=prepared.digest,
        champion_problem=champion_problem,
    )
    return evaluate(prepared.policy, data)


def summary(report: PolicyReport) -> GateCheck:
    """The report as one gate check (the whole report is in the result and on the run)."""
    counts = report.counts()
    failing = [c for c in report.checks if c.verdict != "pass"]
    worst = "; ".join(
        f"{c.verdict} {c.name} ({'—' if c.value is None else f'{c.value:.4g}'})"
        for c in failing[:3]
    )
    text = (
        f"{counts['pass']} pass, {counts['fail']} fail, {counts['undecided']} undecided on "
        f"{report.rows} rows of {report.dataset}"
    )
    return GateCheck("policy", report.passed, f"{text}: {worst}" if worst else text)


def log_report(tracking_uri: str, run_id: str, report: PolicyReport) -> None:
    """The report on the candidate's run, as JSON and as the table a person reads; a run
    that cannot take it does not change the verdict."""
    from backends.policy import render, report_dict

    client = connect(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="mlops-gate-report-") as tmp:
        (Path(tmp) / "report.json").write_text(json.dumps(report_dict(report), indent=1))
        (Path(tmp) / "report.txt").write_text(render(report))
        with contextlib.suppress(BackendError), translate_errors(tracking_uri):
            client.log_artifacts(run_id, tmp, artifact_path=REPORT_DIR)
            client.set_tag(run_id, "mlops.gate.policy", "passed" if report.passed else "failed")


def held_out_of(tracking_uri: str, run_id: str, into: str) -> Path | None:
    """The held-out split a training run kept back (``HELD_OUT_ARTIFACT``), fetched into
    ``into``; None when the run kept none."""
    client = connect(tracking_uri)
    with translate_errors(tracking_uri):
        found = {
            a.path for a in client.list_artifacts(run_id, Path(HELD_OUT_ARTIFACT).parent.as_posix())
        }
        if HELD_OUT_ARTIFACT not in found:
            return None
        return Path(client.download_artifacts(run_id, HELD_OUT_ARTIFACT, into))


def _plain(value: Any) -> Any:
    """numpy scalars that json does not know, as Python values."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to the evaluation rows")


def _predictions(path: str) -> list[Any]:
    return list(json.loads(Path(path).read_text())["predictions"])


def _evaluation_set(
    client: Any, tracking_uri: str, run: Any, policy: Any, into: str
) -> tuple[Any, str, str]:
    import mlflow.data

    source = policy.evaluation
    inputs = list(getattr(run.inputs, "dataset_inputs", None) or [])
    run_id = run.info.run_id
    where = f"{policy.source}: evaluation"
    if source.kind == "path":
        path = Path(source.value).expanduser()
        if not path.is_file():
            raise InvalidInput(f"{where}.path: no file {path} (relative to {Path.cwd()})")
        frame = _read_table(path, where)
        return frame, str(path.resolve()), _digest(frame)
    if source.kind == "dataset":
        found = [i for i in inputs if i.dataset.name == source.value]
        if not found:
            known = ", ".join(sorted({i.dataset.name for i in inputs})) or "none"
            raise InvalidInput(
                f"{where}.dataset: run {run_id} has no dataset input {source.value!r} "
                f"(its inputs: {known})"
            )
        entry = _one_input(
            found,
            f"{where}.dataset: run {run_id} has dataset inputs named {source.value!r}",
            "give them names of their own",
        )
        try:
            local = mlflow.data.get_source(entry).load()
        except Exception as exc:
            raise InvalidInput(
                f"{where}.dataset: {source.value!r} cannot be loaded from its source "
                f"({entry.dataset.source_type}): {' '.join(str(exc).split())[:200]}"
            ) from None
        frame = _read_table(Path(local), where)
        digest = _digest(frame)
        if digest != entry.dataset.digest:
            raise InvalidInput(
                f"{where}.dataset: {source.value!r} as loaded has digest {digest}, not the "
                f"{entry.dataset.digest} the run logged: its source changed since"
            )
        return frame, f"dataset {source.value} ({entry.dataset.source_type})", digest
    logged = [i for i in inputs if _context(i) == "evaluation"]
    # Which input the split is, before fetching it: two that differ are refused either way.
    expected = (
        _one_input(
            logged,
            f"{where}: run {run_id} has dataset inputs of context 'evaluation'",
            "log the held-out split alone under that context, or name the rows in the policy "
            "(evaluation.path, or evaluation.dataset)",
        )
        if logged
        else None
    )
    local = held_out_of(tracking_uri, run_id, into) if expected is not None else None
    if expected is None or local is None:
        raise InvalidInput(
            f"{where}: the policy judges on the held-out split, but run {run_id} "
            f"logged none (log it as the artifact {HELD_OUT_ARTIFACT} and as a dataset input of "
            "context 'evaluation'; or name a path or a dataset in the policy)"
        )
    frame = _read_table(local, where)
    digest = _digest(frame)
    if digest != expected.dataset.digest:
        raise InvalidInput(
            f"{where}: {HELD_OUT_ARTIFACT} of run {run_id} has digest {digest}, not the "
            f"{expected.dataset.digest} its evaluation input {expected.dataset.name} logged: "
            "it is not the split the run kept back"
        )
    return frame, f"the held-out split {expected.dataset.name} of run {run_id}", digest


def _one_input(found: list[Any], which: str, remedy: str) -> Any:
    """The one dataset input among ``found`` (non-empty), whatever order the store lists a
    run's inputs in: the same rows logged twice are one; inputs with different rows are
    refused (``which`` says how they were picked, ``remedy`` what to do), never guessed."""
    by_digest: dict[str, Any] = {}
    for entry in sorted(found, key=lambda i: (i.dataset.name, _context(i))):
        by_digest.setdefault(entry.dataset.digest, entry)
    if len(by_digest) > 1:
        listed = "; ".join(
            f"{entry.dataset.name} (context {_context(entry) or 'none'}, digest {digest})"
            for digest, entry in sorted(by_digest.items())
        )
        raise InvalidInput(
            f"{which} with different rows: {listed}. The gate will not guess which to judge "
            f"on: {remedy}"
        )
    return next(iter(by_digest.values()))


def _read_table(path: Path, where: str) -> Any:
    import pandas as pd

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:
        raise InvalidInput(
            f"{where}: {path} does not read as a table: {' '.join(str(exc).split())[:200]}"
        ) from None


def _digest(frame: Any) -> str:
    from mlflow.data.pandas_dataset import from_pandas

    return str(from_pandas(frame).digest)


def _context(entry: Any) -> str:
    return next((t.value for t in entry.tags if t.key == _CONTEXT), "")


def _refuse_missing_columns(frame: Any, policy: Any) -> None:
    """A slice or fairness column the evaluation set lacks, refused before any model predicts
    (``evaluate`` checks again, for callers that come without a frame)."""
    from backends.policy.spec import check_columns

    target = policy.evaluation.target
    check_columns(policy, [str(c) for c in frame.columns if str(c) != target])


def _refuse_training_rows(run: Any, digest: str, source: str) -> None:
    inputs = list(getattr(run.inputs, "dataset_inputs", None) or [])
    for entry in inputs:
        if _context(entry) == "training" and entry.dataset.digest == digest:
            raise InvalidInput(
                f"{source}: evaluation: the evaluation set is the candidate's own training data "
                f"({entry.dataset.name}, digest {digest}): judge it on rows it was not fitted to"
            )


def _match_signature(frame: Any, model_path: str, policy: Any) -> list[str]:
    """The candidate's input columns, in signature order, once the evaluation set holds each
    with a type the signature takes; InvalidInput naming every mismatch otherwise."""
    from mlflow.models import Model

    target = policy.evaluation.target
    where = f"{policy.source}: evaluation"
    if target not in frame.columns:
        raise InvalidInput(
            f"{where}.target: the evaluation set has no column {target!r} "
            f"(its columns: {', '.join(map(str, frame.columns))})"
        )
    signature = Model.load(model_path).signature
    if signature is None or signature.inputs is None:
        raise InvalidInput(f"{where}: the candidate has no input signature to select columns by")
    problems = []
    for spec in signature.inputs.to_dict():
        name, kind = spec.get("name"), str(spec.get("type", ""))
        if name is None:
            raise InvalidInput(f"{where}: the candidate's signature has unnamed inputs")
        if name not in frame.columns:
            problems.append(f"missing {name} ({kind})")
        elif kind in ("double", "float", "long", "integer") and frame[name].dtype.kind not in "iuf":
            problems.append(f"{name} is {frame[name].dtype}, the model expects {kind}")
        elif kind == "string" and frame[name].dtype.kind not in "OSUT":
            problems.append(f"{name} is {frame[name].dtype}, the model expects text")
    if problems:
        raise InvalidInput(
            f"{where}: the evaluation set does not match the candidate's signature: "
            + "; ".join(problems)
        )
    return [str(spec["name"]) for spec in signature.inputs.to_dict()]


def signature_columns(model_path: str) -> list[str] | None:
    """The model's input columns in signature order (None without named inputs)."""
    from mlflow.models import Model

    signature = Model.load(model_path).signature
    if signature is None or signature.inputs is None:
        return None
    names = [spec.get("name") for spec in signature.inputs.to_dict()]
    return None if any(n is None for n in names) else [str(n) for n in names]
