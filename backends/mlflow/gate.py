"""The promotion gate's rules: metric requirements, signature compatibility, load-and-predict.

Pure functions over plain values (plus ``predict_check``, which is handed a loaded model path),
so the gate's logic is unit-tested without a registry; ``model_checks`` fetches the models.
"""

from __future__ import annotations

import json
import operator
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.errors import InvalidInput
from backends.mlflow.client import registry_uri_for, translate_errors, using_tracking_uri
from backends.records import GateCheck, PolicyReport

__all__ = [
    "Requirement",
    "check_requirement",
    "compare_inputs",
    "home_env",
    "inputs_of",
    "model_checks",
    "parse_requirement",
    "predict_check",
]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_REQUIREMENT = re.compile(
    r"^\s*(?P<metric>[^<>=!]+?)\s*(?P<op>>=|<=|==|!=|>|<|=)\s*(?P<value>\S+)\s*$"
)


@dataclass(frozen=True)
class Requirement:
    """A gate requirement on a run metric, e.g. ``accuracy>=0.9``."""

    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_requirement(text: str) -> Requirement:
    """Parse ``METRIC OP NUMBER`` (OP one of >= <= > < == != =); InvalidInput otherwise."""
    match = _REQUIREMENT.match(text)
    if not match:
        raise InvalidInput(f"bad requirement {text!r}: expected METRIC>=NUMBER (or <=, >, <, ==)")
    op = "==" if match["op"] == "=" else match["op"]
    try:
        threshold = float(match["value"])
    except ValueError:
        raise InvalidInput(
            f"bad requirement {text!r}: {match['value']!r} is not a number"
        ) from None
    return Requirement(match["metric"], op, threshold)


def check_requirement(requirement: Requirement, metrics: dict[str, float]) -> GateCheck:
    """Whether the run's metric meets the requirement."""
    name = f"require {requirement}"
    value = metrics.get(requirement.metric)
    if value is None:
        known = ", ".join(sorted(metrics)) or "none"
        return GateCheck(name, False, f"the run has no metric {requirement.metric!r} ({known})")
    passed = _OPS[requirement.op](float(value), requirement.threshold)
    return GateCheck(name, passed, f"{requirement.metric} = {value:g}")


def _input_types(schema: list[dict[str, Any]]) -> dict[str, str]:
    types: dict[str, str] = {}
    for i, spec in enumerate(schema):
        kind = str(spec.get("type", "?"))
        if "tensor-spec" in spec:
            tensor = spec["tensor-spec"]
            kind = f"tensor({tensor.get('dtype')}, {tensor.get('shape')})"
        types[str(spec.get("name") or f"#{i}")] = kind
    return types


def compare_inputs(
    current: list[dict[str, Any]] | None,
    candidate: list[dict[str, Any]] | None,
    current_version: int,
) -> GateCheck:
    """Same input columns and types as the version holding the alias (schemas as to_dict())."""
    if candidate is None:
        return GateCheck("signature", False, "the version has no input signature")
    if current is None:
        return GateCheck(
            "signature", True, f"version {current_version} has no signature; nothing to compare"
        )
    old, new = _input_types(current), _input_types(candidate)
    differences = [f"missing {c} ({t})" for c, t in old.items() if c not in new]
    differences += [f"extra {c} ({t})" for c, t in new.items() if c not in old]
    differences += [f"{c}: {old[c]} -> {new[c]}" for c in old if c in new and old[c] != new[c]]
    if differences:
        return GateCheck(
            "signature",
            False,
            f"inputs differ from version {current_version}: " + "; ".join(differences),
        )
    return GateCheck(
        "signature", True, f"same {len(new)} input columns and types as version {current_version}"
    )


def inputs_of(model: Any) -> list[dict[str, Any]] | None:
    """A model's input schema as ``to_dict()`` entries, or None without a signature."""
    signature = getattr(model, "signature", None)
    if signature is None or signature.inputs is None:
        return None
    return list(signature.inputs.to_dict())


def predict_check(
    pyfunc: Any, path: str, rows: str | None = None, out: str | None = None
) -> GateCheck:
    """Load the model at ``path`` with ``pyfunc`` and predict on its own input example; with
    ``rows`` (a JSON ``{"columns", "data"}`` file) predict on those too, into ``out`` (JSON)."""
    try:
        model = pyfunc.load_model(path)
    except Exception as exc:
        return GateCheck("predict", False, f"the model does not load: {_one_line(exc)}")
    example = model.input_example
    if example is None:
        return GateCheck("predict", False, "the model has no input example to predict on")
    try:
        predictions = model.predict(example)
    except Exception as exc:
        return GateCheck("predict", False, f"predict on its input example failed: {_one_line(exc)}")
    count = len(predictions) if hasattr(predictions, "__len__") else 1
    done = GateCheck("predict", True, f"loads and predicts {count} rows on its input example")
    if rows is None or out is None:
        return done
    try:
        import numpy as np
        import pandas as pd

        table = json.loads(Path(rows).read_text())
        frame = pd.DataFrame(table["data"], columns=table["columns"])
        answers = np.asarray(model.predict(frame))
        if answers.ndim > 1:
            answers = answers[:, 0]
        Path(out).write_text(json.dumps({"predictions": answers.tolist()}))
    except Exception as exc:
        return GateCheck(
            "predict", False, f"predict on the evaluation set failed: {_one_line(exc)}"
        )
    return GateCheck("predict", True, f"{done.detail} and {len(frame)} evaluation rows")


# What the child may see: enough to run Python, nothing that reaches a system or holds a secret.
_CHILD_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")


# A check process loads the model and its libraries (~250 MB): a few at a time per process,
# however many promotions run at once (the others wait their turn).
def _parallel() -> int:
    value = os.environ.get("MLOPS_GATE_PARALLEL", "2")
    return max(1, int(value)) if value.isdigit() else 2


_CHILDREN = threading.BoundedSemaphore(_parallel())


def home_env(home: str) -> dict[str, str]:
    """What a check process is given of its own: a home, and a tracking store inside it."""
    return {"HOME": home, "MLFLOW_TRACKING_URI": f"file://{home}/mlruns"}


def isolated_predict_check(
    path: str, timeout: float | None = None, rows: str | None = None, out: str | None = None
) -> GateCheck:
    """``predict_check`` in a child process with a bare environment and a time limit (with
    ``rows`` and ``out``: its predictions on those rows, written to ``out``)."""
    with _CHILDREN:
        return _predict_in_child(path, timeout, rows, out)


def _predict_in_child(
    path: str, timeout: float | None, rows: str | None = None, out: str | None = None
) -> GateCheck:
    from backends.mlflow import gate_forks

    limit = timeout or float(os.environ.get("MLOPS_GATE_TIMEOUT", "300"))
    env = {k: v for k, v in os.environ.items() if k in _CHILD_ENV}
    forked = gate_forks.check(path, limit, env, rows, out) if gate_forks.enabled() else None
    if forked is not None:
        return forked
    extra = [rows, out] if rows is not None and out is not None else []
    with tempfile.TemporaryDirectory(prefix="mlops-gate-home-") as home:
        env.update(home_env(home))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "backends.mlflow.gate_child", path, *extra],
                capture_output=True,
                text=True,
                timeout=limit,
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return GateCheck("predict", False, f"loading and predicting took over {limit:g}s")
    try:
        found = json.loads(done.stdout.strip().splitlines()[-1])
        return GateCheck("predict", bool(found["passed"]), str(found["detail"]))
    except (ValueError, IndexError, KeyError, TypeError):
        tail = " ".join(done.stderr.split()[-40:])
        return GateCheck("predict", False, f"the check process failed ({done.returncode}): {tail}")


def format_check(path: str) -> GateCheck:
    """How the model is serialised (said in the report; a pickle runs code when loaded)."""
    import yaml

    try:
        flavors = yaml.safe_load((Path(path) / "MLmodel").read_text()).get("flavors", {})
    except (OSError, ValueError, AttributeError):
        return GateCheck("format", False, "the model has no readable MLmodel file")
    found = []
    for name, spec in flavors.items():
        if not isinstance(spec, dict):
            continue
        how = spec.get("serialization_format") or ("pickle" if spec.get("pickled_model") else "")
        if how:
            found.append(f"{name}: {how}")
    loader = flavors.get("python_function", {}).get("loader_module", "?")
    text = ", ".join(found) or f"loaded by {loader}"
    risky = any(word in text for word in ("pickle", "cloudpickle"))
    note = " (runs code when loaded: checked in a separate process)" if risky else ""
    return GateCheck("format", True, f"serialised as {text}{note}")


def _one_line(exc: Exception) -> str:
    text = " ".join(f"{exc.__class__.__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."


def model_checks(
    tracking_uri: str,
    name: str,
    version: int,
    holder: int | None,
    run_id: str | None = None,
    *,
    champion: int | None = None,
) -> tuple[list[GateCheck], PolicyReport | None]:
    """The signature check against the alias ``holder``, the load-and-predict check, and the
    run's gate policy (``gate.yaml``) judged on its evaluation set against the ``champion``
    (whichever alias moves: a challenger is judged against the champion); without a policy, a
    ``policy`` check that says so and does not fail the gate."""
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    from backends.mlflow import gate_policy

    def fetch(uri: str, into: str) -> str:
        with translate_errors(tracking_uri):
            return str(
                download_artifacts(
                    uri,
                    dst_path=into,
                    tracking_uri=tracking_uri,
                    registry_uri=registry_uri_for(tracking_uri),
                )
            )

    with (
        tempfile.TemporaryDirectory(prefix="mlops-gate-") as tmp,
        using_tracking_uri(tracking_uri),
    ):
        path = fetch(f"models:/{name}/{version}", f"{tmp}/candidate")
        if holder is None or holder == version:
            why = "no version holds the alias" if holder is None else "it holds the alias"
            signature = GateCheck("signature", True, f"{why}; nothing to compare")
        else:
            held = Model.load(fetch(f"models:/{name}/{holder}/MLmodel", f"{tmp}/holder"))
            signature = compare_inputs(inputs_of(held), inputs_of(Model.load(path)), holder)
        prepared = gate_policy.prepare(tracking_uri, run_id, path, tmp)
        if isinstance(prepared, gate_policy.NoPolicy):
            checks = [signature, format_check(path), isolated_predict_check(path)]
            return [*checks, prepared.check()], None
        columns = prepared.columns
        out = prepared.out_for("candidate")
        predict = isolated_predict_check(
            path, rows=prepared.rows_for(columns, "candidate"), out=out
        )
        checks = [signature, format_check(path), predict]
        if not predict.passed:
            checks.append(GateCheck("policy", False, "not judged: the candidate did not predict"))
            return checks, None
        compared = champion is not None and champion != version
        theirs, problem = None, ""
        if compared and prepared.policy.champion:
            theirs, problem = _champion_predictions(fetch, prepared, name, champion, tmp)
        report = gate_policy.judge(prepared, out, theirs, champion if compared else None, problem)
        if run_id:
            gate_policy.log_report(tracking_uri, run_id, report)
        checks.append(gate_policy.summary(report))
        return checks, report


def _champion_predictions(
    fetch: Callable[[str, str], str], prepared: Any, name: str, holder: int | None, tmp: str
) -> tuple[str | None, str]:
    """The holder's predictions on the same rows (its own columns), or why there are none."""
    from backends.mlflow import gate_policy

    path = fetch(f"models:/{name}/{holder}", f"{tmp}/champion")
    columns = gate_policy.signature_columns(path)
    if columns is None or any(c not in prepared.frame.columns for c in columns):
        return None, f"version {holder} has no signature the evaluation set matches"
    out = prepared.out_for("champion")
    check = isolated_predict_check(path, rows=prepared.rows_for(columns, "champion"), out=out)
    if not check.passed:
        return None, f"version {holder} did not predict: {check.detail}"
    return out, ""
