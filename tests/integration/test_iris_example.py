"""examples/iris as an MLflow Project run against a real tracking server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backends.mlflow.gate_policy import HELD_OUT_ARTIFACT
from tests import services
from tests.models import training_inputs

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def mlflow_run(
    tracking_uri: str, experiment: str, *params: str
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(PROJECT),
        "--env-manager",
        "local",
        "--experiment-name",
        experiment,
    ]
    for p in params:
        cmd += ["-P", p]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        env=services.env_with_venv_on_path(MLFLOW_TRACKING_URI=tracking_uri),
    )


def run_id_of(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    match = re.search(r"run_id=([0-9a-f]{32})", proc.stdout)
    assert match, proc.stdout
    return match.group(1)


def test_same_params_and_data_give_same_metrics(tracking_uri: str, experiment_name: str) -> None:
    from mlflow.tracking import MlflowClient

    params = ("n_estimators=15", "max_depth=3", "seed=7")
    first = run_id_of(mlflow_run(tracking_uri, experiment_name, *params))
    second = run_id_of(mlflow_run(tracking_uri, experiment_name, *params))
    other_seed = run_id_of(
        mlflow_run(
            tracking_uri,
            experiment_name,
            "n_estimators=15",
            "max_depth=3",
            "seed=8",
            "test_size=0.5",
        )
    )
    client = MlflowClient(tracking_uri)
    runs = [client.get_run(r) for r in (first, second, other_seed)]
    assert first != second
    assert runs[0].data.metrics == runs[1].data.metrics
    assert set(runs[0].data.metrics) == {"accuracy", "f1"}
    # A different split is a different experiment: the test above is not trivially true.
    assert runs[2].data.params["test_size"] == "0.5"
    # The training input is the rows each run was fitted on: the same split, the same digest;
    # another split, other rows.
    digests = [[i.dataset.digest for i in training_inputs(r)] for r in runs]
    assert digests[0] == digests[1] != digests[2] and len(digests[0]) == 1


def test_run_logs_params_dataset_model_and_drift_reference(
    tracking_uri: str, experiment_name: str, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    run_id = run_id_of(mlflow_run(tracking_uri, experiment_name, "n_estimators=10"))
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["n_estimators"] == "10"
    assert {"max_depth", "seed", "test_size", "data"} <= set(run.data.params)
    assert 0.8 <= run.data.metrics["accuracy"] <= 1.0
    (dataset_input,) = training_inputs(run)
    assert dataset_input.dataset.name == "iris" and dataset_input.dataset.digest
    # The training input is the 120 rows the model was fitted on, apart from the 30 held out.
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 120
    # The held-out split: logged as a file and as an input whose digest is the file's.
    contexts = sorted(t.value for i in run.inputs.dataset_inputs for t in i.tags)
    assert contexts == ["evaluation", "training"]
    held_out = pd.read_csv(client.download_artifacts(run_id, HELD_OUT_ARTIFACT, str(tmp_path)))
    assert len(held_out) == 30 and list(held_out.columns) == [*FEATURES, "target"]
    (evaluation,) = [i for i in run.inputs.dataset_inputs if i not in training_inputs(run)]
    assert evaluation.dataset.digest == mlflow.data.from_pandas(held_out).digest

    ref_path = client.download_artifacts(run_id, "drift_reference.json", str(tmp_path))
    reference = json.loads(Path(ref_path).read_text())
    assert reference["format"] == "mlops-drift-reference/1"
    assert sorted(reference["features"]) == sorted(FEATURES)
    for feature in reference["features"].values():
        assert len(feature["expected"]) == len(feature["edges"]) + 1
        assert abs(sum(feature["expected"]) - 1.0) < 1e-9
        assert 0 < len(feature["sample"]) <= 500

    # Asked of this server by name: mlflow's module-level calls follow the process-wide
    # tracking URI, which other tests in this worker point at other servers.
    (model,) = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
    )
    assert model.source_run_id == run_id
    mlflow.set_tracking_uri(tracking_uri)  # models:/ resolves through it
    loaded = mlflow.pyfunc.load_model(model.model_uri)
    assert loaded.metadata.get_input_schema().input_names() == FEATURES
    row = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=FEATURES)
    assert int(loaded.predict(row)[0]) == 0  # a textbook setosa


def test_new_data_can_be_fed_and_a_bad_path_fails(
    tracking_uri: str, experiment_name: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    csv = tmp_path / "shifted.csv"
    frame.assign(petal_length=frame.petal_length + 1.0).to_csv(csv, index=False)
    run_id = run_id_of(mlflow_run(tracking_uri, experiment_name, f"data={csv}", "n_estimators=5"))
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.data.params["data"] == str(csv)
    bundled = run_id_of(mlflow_run(tracking_uri, experiment_name, "n_estimators=5"))
    digest = training_inputs(MlflowClient(tracking_uri).get_run(bundled))[0].dataset.digest
    assert training_inputs(run)[0].dataset.digest != digest  # new data, new digest

    failed = mlflow_run(tracking_uri, experiment_name, f"data={tmp_path / 'nope.csv'}")
    assert failed.returncode != 0
    assert "data file not found" in failed.stdout + failed.stderr
