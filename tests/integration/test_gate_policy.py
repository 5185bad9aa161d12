"""The gate policy end to end: `mlops train` of the example projects copies their gate.yaml to
the run, `mlops models validate|promote` judge the version by it on the held-out split the run
logged, against the champion, and log the report to the run; bad policies and evaluation sets
are refused before anything is judged."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from console.cli.exit_codes import ExitCode
from tests import services

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path: Path, tracking_uri: str) -> dict[str, str]:
    return {
        "MLOPS_STATE_DIR": str(tmp_path / "state"),
        "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLOPS_USER": "gate-test",
    }


def mlops(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from console.cli.main import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=services.env_with_venv_on_path(**env),
    )


def train(project: Path, model: str, env: dict[str, str], *params: str) -> str:
    pairs = [x for p in params for x in ("-P", p)]
    done = mlops("train", str(project), "-q", "--register-as", model, *pairs, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    match = re.search(r"^run_id=([0-9a-f]{32})", done.stdout, re.MULTILINE)
    assert match, done.stdout
    return match.group(1)


def validate(model: str, version: int, env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    done = mlops("models", "validate", model, str(version), "--json", env=env)
    document = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
    return done.returncode, document, done.stdout + done.stderr


def test_iris_is_judged_by_its_policy_on_the_split_it_kept_back(
    env: dict[str, str], experiment_name: str, tracking_uri: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    model = f"{experiment_name}-iris"
    env = {**env, "MLFLOW_EXPERIMENT_NAME": experiment_name}
    run_id = train(ROOT / "examples" / "iris", model, env, "n_estimators=10")
    client = MlflowClient(tracking_uri)
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "gate.yaml" in artifacts  # the policy travelled with the model

    code, document, output = validate(model, 1, env)
    assert code == 0, output
    report = document["policy"]
    assert report is not None and report["passed"] is True
    run = client.get_run(run_id)
    (held_out,) = [
        i for i in run.inputs.dataset_inputs if any(t.value == "evaluation" for t in i.tags)
    ]
    assert report["digest"] == held_out.dataset.digest and report["rows"] == 30
    assert "held-out split" in report["dataset"] and run_id in report["dataset"]
    kinds = {c["kind"] for c in report["checks"]}
    assert kinds == {"floor", "slice"}  # no champion yet: nothing to compare with
    assert any("petal_length" in c["name"] for c in report["checks"])
    for check in report["checks"]:
        assert check["low"] <= check["value"] <= check["high"]
    assert any(c["name"] == "policy" and c["passed"] for c in document["checks"])

    # The report is on the candidate's run, as JSON and as a table.
    logged = client.download_artifacts(run_id, "gate", str(tmp_path))
    assert json.loads((Path(logged) / "report.json").read_text())["passed"] is True
    assert "judged on the held-out split" in (Path(logged) / "report.txt").read_text()

    promoted = mlops("models", "promote", model, "1", "--yes", env=env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    # A second version is compared with the champion on its own held-out rows.
    train(ROOT / "examples" / "iris", model, env, "n_estimators=12", "seed=3")
    code, document, output = validate(model, 2, env)
    assert code == 0, output
    report = document["policy"]
    assert report["champion_version"] == 1
    (compared,) = [c for c in report["checks"] if c["kind"] == "champion"]
    assert "v1" in compared["name"] and "champion" in compared["detail"]


def test_the_unfair_loan_model_is_caught_and_the_fair_one_passes(
    env: dict[str, str], experiment_name: str
) -> None:
    model = f"{experiment_name}-loans"
    env = {**env, "MLFLOW_EXPERIMENT_NAME": experiment_name}
    project = ROOT / "examples" / "loans"
    train(project, model, env)  # a linear model: learns the majority's rule only
    refused = mlops("models", "promote", model, "1", "--yes", "--json", env=env)
    assert refused.returncode == ExitCode.CHECK_FAILED, refused.stdout + refused.stderr
    gate = json.loads(refused.stdout)["gate"]
    assert gate["policy"] is not None, refused.stdout
    fairness = [c for c in gate["policy"]["checks"] if c["kind"] == "fairness"]
    assert fairness and all(c["verdict"] == "fail" for c in fairness)
    assert "group=B" in fairness[0]["detail"]
    assert gate["policy"]["worst_slices"][0]["slice"].startswith("group=B")
    shown = mlops("models", "list", "--json", env=env)
    (listed,) = [m for m in json.loads(shown.stdout) if m["name"] == model]
    assert "champion" not in listed["aliases"]  # nothing moved

    train(project, model, env, "model=tree")
    promoted = mlops("models", "promote", model, "2", "--yes", env=env)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr


def test_bad_policies_and_evaluation_sets_are_refused_before_judging(
    env: dict[str, str], experiment_name: str, tracking_uri: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import load_iris

    # A project whose policy does not read is refused before it trains.
    project = tmp_path / "iris"
    shutil.copytree(ROOT / "examples" / "iris", project)
    (project / "gate.yaml").write_text("metrics:\n  acuracy: {min: 0.9}\n")
    env = {**env, "MLFLOW_EXPERIMENT_NAME": experiment_name}
    bad = mlops("train", str(project), "-P", "n_estimators=5", env=env)
    assert bad.returncode == ExitCode.USAGE, bad.stdout + bad.stderr
    assert "metrics.acuracy" in bad.stderr and "unknown metric" in bad.stderr
    assert "run_id=" not in bad.stdout

    model = f"{experiment_name}-refusals"
    shutil.copyfile(ROOT / "examples" / "iris" / "gate.yaml", project / "gate.yaml")
    run_id = train(project, model, env, "n_estimators=5")
    client = MlflowClient(tracking_uri)
    frame = load_iris(as_frame=True).frame
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width", "target"]
    training_rows = tmp_path / "all-iris.csv"
    frame.to_csv(training_rows, index=False)
    narrow = tmp_path / "narrow.csv"
    frame.drop(columns="petal_width").head(40).to_csv(narrow, index=False)

    def with_policy(text: str) -> str:
        policy = tmp_path / "policy" / "gate.yaml"
        policy.parent.mkdir(exist_ok=True)
        policy.write_text(text)
        client.log_artifact(run_id, str(policy))  # replaces the run's copy
        code, _, output = validate(model, 1, env)
        assert code == ExitCode.USAGE, output
        return output

    out = with_policy(f"evaluation: {{path: {training_rows}}}\nmetrics: {{accuracy: 0.5}}\n")
    assert "own training data" in out
    out = with_policy(f"evaluation: {{path: {narrow}}}\nmetrics: {{accuracy: 0.5}}\n")
    assert "does not match the candidate's signature" in out and "petal_width" in out
    out = with_policy("metrics: {accuracy: 0.5}\nslices: {by: [petal_colour]}\n")
    assert "slices.by[0]" in out and "petal_colour" in out
    out = with_policy("evaluation: {dataset: nowhere}\nmetrics: {accuracy: 0.5}\n")
    assert "no dataset input 'nowhere'" in out and "iris-held-out" in out
    out = with_policy("metrics: {accuracy: 0.5}\nbootstrap: {resamples: 5}\n")
    assert "bootstrap.resamples" in out
