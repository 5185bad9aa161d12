"""The gate policy end to end: `mlops train` of the example projects copies their gate.yaml to
the run, `mlops models validate|promote` judge the version by it on the held-out split the run
logged (or a file, or a dataset input the policy names), against the champion, and log the
report to the run; bad policies and evaluation sets are refused before any model predicts.

What the gate reads from the tracking store (the run's dataset inputs, its artifacts, a policy
replaced after training) is tested against both stores, sqlite and PostgreSQL, on one trained
version each. The whole workflows (two trainings, validations and a promotion each) run on
sqlite only: the gate reaches the store through the tracking server's REST API, so the second
store would repeat them (two minutes of the suite's CPU) without testing anything new."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backends.errors import InvalidInput
from console.cli.exit_codes import ExitCode
from tests import services
from tests.cli_load import mlops
from tests.conftest import FEATURES, STORES, example_train_module, iris_frame, server_for

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = "evaluation/held_out.csv"


@pytest.fixture(scope="module")
def mlflow_server(request: pytest.FixtureRequest) -> services.MlflowServer:
    return server_for(getattr(request, "param", "sqlite"))  # a test with neither mark: sqlite


# Module-scoped, so that the tests of one store share its server and its trained version.
ON_BOTH_STORES = pytest.mark.parametrize("mlflow_server", STORES, indirect=True, scope="module")
ON_SQLITE = pytest.mark.parametrize("mlflow_server", ["sqlite"], indirect=True, scope="module")


def env_for(tracking_uri: str, home: Path) -> dict[str, str]:
    return {
        "MLOPS_STATE_DIR": str(home / "state"),
        "MLOPS_CACHE_DIR": str(home / "cache"),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLOPS_USER": "gate-test",
    }


@pytest.fixture
def env(tmp_path: Path, tracking_uri: str) -> dict[str, str]:
    return env_for(tracking_uri, tmp_path)


@dataclass(frozen=True)
class Judged:
    """Version 1 of a model of its own, trained once per store from the iris example: the
    tests that replace its run's policy or evaluation data share it."""

    model: str
    run_id: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def judged(
    mlflow_server: services.MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Judged:
    experiment = f"test-{uuid.uuid4().hex[:10]}"
    home = tmp_path_factory.mktemp("judged")
    env = {**env_for(mlflow_server.url, home), "MLFLOW_EXPERIMENT_NAME": experiment}
    model = f"{experiment}-judged"
    return Judged(model, train(ROOT / "examples" / "iris", model, env, "n_estimators=5"), env)


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


@ON_SQLITE
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


@ON_SQLITE
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


def with_policy(judged: Judged, text: str, directory: Path) -> tuple[int, dict[str, Any], str]:
    """Replace the run's gate.yaml with ``text`` and validate version 1 by it."""
    from mlflow.tracking import MlflowClient

    policy = directory / "policy" / "gate.yaml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text(text)
    MlflowClient(judged.env["MLFLOW_TRACKING_URI"]).log_artifact(judged.run_id, str(policy))
    return validate(judged.model, 1, judged.env)


@ON_BOTH_STORES
def test_bad_policies_and_evaluation_sets_are_refused_before_judging(
    env: dict[str, str],
    experiment_name: str,
    tracking_uri: str,
    tmp_path: Path,
    judged: Judged,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.data
    import pandas as pd
    from mlflow.tracking import MlflowClient
    from sklearn.model_selection import train_test_split

    from backends.mlflow import gate

    # A project whose policy does not read is refused before it trains.
    project = tmp_path / "iris"
    shutil.copytree(ROOT / "examples" / "iris", project)
    (project / "gate.yaml").write_text("metrics:\n  acuracy: {min: 0.9}\n")
    env = {**env, "MLFLOW_EXPERIMENT_NAME": experiment_name}
    bad = mlops("train", str(project), "-P", "n_estimators=5", env=env)
    assert bad.returncode == ExitCode.USAGE, bad.stdout + bad.stderr
    assert "metrics.acuracy" in bad.stderr and "unknown metric" in bad.stderr
    assert "run_id=" not in bad.stdout

    # The rows the version was fitted on, drawn as the example draws them (its defaults).
    frame, defaults = iris_frame(), example_train_module().parse_args([])
    x_train, _, y_train, _ = train_test_split(
        frame[FEATURES],
        frame["target"],
        test_size=defaults.test_size,
        random_state=defaults.seed,
        stratify=frame["target"],
    )
    training_rows = tmp_path / "fitted.csv"
    x_train.assign(target=y_train).reset_index(drop=True).to_csv(training_rows, index=False)
    (fitted,) = [
        i.dataset.digest
        for i in MlflowClient(tracking_uri).get_run(judged.run_id).inputs.dataset_inputs
        if any(t.value == "training" for t in i.tags)
    ]
    assert mlflow.data.from_pandas(pd.read_csv(training_rows)).digest == fitted
    narrow = tmp_path / "narrow.csv"
    frame.drop(columns="petal_width").head(40).to_csv(narrow, index=False)

    def refused(text: str) -> str:
        code, _, output = with_policy(judged, text, tmp_path)
        assert code == ExitCode.USAGE, output
        return output

    out = refused(f"evaluation: {{path: {training_rows}}}\nmetrics: {{accuracy: 0.5}}\n")
    assert "own training data" in out and fitted in out
    out = refused(f"evaluation: {{path: {narrow}}}\nmetrics: {{accuracy: 0.5}}\n")
    assert "does not match the candidate's signature" in out and "petal_width" in out
    out = refused("metrics: {accuracy: 0.5}\nslices: {by: [petal_colour]}\n")
    assert "slices.by[0]" in out and "petal_colour" in out
    # ... refused in prepare, before any model predicted: not one load-and-predict check ran.
    predicted: list[str] = []
    monkeypatch.setattr(
        gate, "isolated_predict_check", lambda path, *a, **k: predicted.append(path)
    )
    with pytest.raises(InvalidInput, match=r"slices\.by\[0\]: column 'petal_colour'"):
        gate.model_checks(tracking_uri, judged.model, 1, None, judged.run_id)
    assert predicted == []
    out = refused("evaluation: {dataset: nowhere}\nmetrics: {accuracy: 0.5}\n")
    assert "no dataset input 'nowhere'" in out and "iris-held-out" in out
    out = refused("metrics: {accuracy: 0.5}\nbootstrap: {resamples: 5}\n")
    assert "bootstrap.resamples" in out


@ON_BOTH_STORES
def test_an_evaluation_set_named_by_path_or_by_dataset_is_judged(
    tracking_uri: str, tmp_path: Path, judged: Judged
) -> None:
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    held_out = pd.read_csv(client.download_artifacts(judged.run_id, HELD_OUT, str(tmp_path)))
    judge_by = "metrics: {accuracy: 0.5}\nundecided: pass\n"

    # A file the policy names (here a copy of the held-out split, outside the run).
    copy = tmp_path / "rows.csv"
    held_out.to_csv(copy, index=False)
    code, document, output = with_policy(
        judged, f"evaluation: {{path: {copy}}}\n{judge_by}", tmp_path
    )
    assert code == 0, output
    report = document["policy"]
    assert (report["dataset"], report["rows"]) == (str(copy.resolve()), len(held_out))
    logged = {
        i.dataset.name: i.dataset.digest
        for i in client.get_run(judged.run_id).inputs.dataset_inputs
    }
    assert report["digest"] == logged["iris-held-out"]

    # A dataset input of the run, loaded from the source it names and checked by its digest.
    source = tmp_path / "later.csv"
    held_out.iloc[5:].to_csv(source, index=False)
    rows = pd.read_csv(source)
    dataset = mlflow.data.from_pandas(rows, source=str(source), name="iris-later", targets="target")
    context = InputTag("mlflow.data.context", "validation")
    client.log_inputs(judged.run_id, [DatasetInput(dataset._to_mlflow_entity(), [context])])
    code, document, output = with_policy(
        judged, f"evaluation: {{dataset: iris-later}}\n{judge_by}", tmp_path
    )
    assert code == 0, output
    report = document["policy"]
    assert report["dataset"] == "dataset iris-later (local)" and report["rows"] == len(rows)
    assert report["digest"] == dataset.digest != logged["iris-held-out"]


@ON_BOTH_STORES
def test_a_held_out_split_replaced_after_training_is_refused_naming_the_digests(
    tracking_uri: str, tmp_path: Path, judged: Judged
) -> None:
    import mlflow.data
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    original = Path(client.download_artifacts(judged.run_id, HELD_OUT, str(tmp_path / "kept")))
    (logged,) = [
        i.dataset.digest
        for i in client.get_run(judged.run_id).inputs.dataset_inputs
        if any(t.value == "evaluation" for t in i.tags)
    ]
    replaced = tmp_path / "replaced" / "held_out.csv"
    replaced.parent.mkdir()
    pd.read_csv(original).iloc[1:].to_csv(replaced, index=False)  # a row fewer
    now = mlflow.data.from_pandas(pd.read_csv(replaced)).digest
    client.log_artifact(judged.run_id, str(replaced), "evaluation")
    try:
        code, _, output = with_policy(judged, "metrics: {accuracy: 0.5}\n", tmp_path)
    finally:
        client.log_artifact(judged.run_id, str(original), "evaluation")  # as training left it
    assert code == ExitCode.USAGE, output
    assert f"has digest {now}, not the {logged} its evaluation input iris-held-out logged" in (
        " ".join(output.split())
    )
    assert "not the split the run kept back" in output
