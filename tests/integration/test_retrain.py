"""`mlops retrain` against a real tracking server and a real model server under real traffic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests import services
from tests.models import training_inputs
from tests.server.conftest import FEATURES, iris_frame
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Serving:
    url: str
    name: str
    run_id: str
    tracking_uri: str
    data: Path


@pytest.fixture(scope="module")
def serving(
    mlflow_server: services.MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Serving]:
    from backends.mlflow.registry import Registry

    tmp = tmp_path_factory.mktemp("retrain")
    name = f"iris-retrain-{os.getpid()}"
    env = services.env_with_venv_on_path(MLFLOW_TRACKING_URI=mlflow_server.url)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT / "examples" / "iris"),
            "--env-manager",
            "local",
            "--experiment-name",
            name,
            "-P",
            "n_estimators=20",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    run_id = re.search(r"run_id=([0-9a-f]{32})", run.stdout).group(1)  # type: ignore[union-attr]
    registry = Registry(mlflow_server.url)
    version = registry.register(run_id, name)
    registry.promote(name, version.version, alias="champion", reason="first")

    frame = iris_frame()
    frame.to_csv(tmp / "clean.csv", index=False)
    frame.assign(petal_length=frame.petal_length + 3.0).to_csv(tmp / "shifted.csv", index=False)

    url, proc = services.start_model_server(
        f"{name}@champion",
        tmp / "server.log",
        MLFLOW_TRACKING_URI=mlflow_server.url,
        MLOPS_DRIFT_INTERVAL="0.3",
        MLOPS_DRIFT_WINDOW="150",
        MLOPS_LOG_DIR=str(tmp / "log"),
    )
    try:
        yield Serving(url, name, run_id, mlflow_server.url, tmp)
    finally:
        services._stop(proc)


def send(url: str, shift: float) -> None:
    rows = iris_frame()[FEATURES].assign(petal_length=lambda f: f.petal_length + shift)
    with httpx.Client() as http:
        for row in rows.values.tolist():
            assert http.post(f"{url}/predict", json={"data": [row]}).status_code == 200


def wait_psi(url: str, above: bool) -> None:
    from backends.lifecycle.retrain_steps import serving_state

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        figures = {f.feature: f.psi for f in serving_state(url).drift.features}
        psi = figures.get("petal_length")
        if psi is not None and (psi > 0.2) == above:
            return
        time.sleep(0.3)
    raise AssertionError(f"petal_length PSI never went {'above' if above else 'below'} 0.2")


def cli(serving: Serving, *args: str) -> tuple[int, str]:
    from console.cli.main import app

    result = CliRunner().invoke(
        app,
        ["retrain", "--target", serving.url, "--quiet", *args],
        env={"MLFLOW_TRACKING_URI": serving.tracking_uri},
    )
    return result.exit_code, result.output


def cli_json(serving: Serving, *args: str) -> tuple[int, Any, str]:
    """`mlops retrain ... --json`: the exit code, the document on stdout, the steps on stderr."""
    from console.cli.main import app

    result = CliRunner().invoke(
        app,
        ["retrain", "--target", serving.url, "--quiet", "--json", *args],
        env={"MLFLOW_TRACKING_URI": serving.tracking_uri},
    )
    return result.exit_code, json.loads(result.stdout), result.stderr


def versions(serving: Serving) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    uri = serving.tracking_uri
    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(serving.name)
    return {alias: str(v) for alias, v in model.aliases.items()}


def test_if_drift_does_nothing_on_clean_traffic(serving: Serving) -> None:
    send(serving.url, 0.0)
    wait_psi(serving.url, above=False)
    code, out = cli(serving, "--if-drift", "--data", str(serving.data / "clean.csv"))
    assert code == 0, out
    assert "no drift above threshold: nothing to retrain" in out
    code, doc, steps = cli_json(serving, "--if-drift", "--data", str(serving.data / "clean.csv"))
    assert code == 0, steps
    assert (doc["retrained"], doc["outcome"], doc["drift"]["drifted"]) == (False, None, False)
    assert (doc["serving"]["model"], doc["serving"]["version"]) == (serving.name, 1)
    assert "nothing to retrain" in steps
    assert versions(serving) == {"champion": "1"}


def test_shifted_traffic_trains_a_gated_challenger_that_waits_for_approval(
    serving: Serving,
) -> None:
    from mlflow.tracking import MlflowClient

    send(serving.url, 3.0)
    wait_psi(serving.url, above=True)
    code, out = cli(serving, "--if-drift", "--data", str(serving.data / "shifted.csv"))
    assert code == 0, out
    assert "drift: petal_length PSI=" in out
    assert "challenger not worse than champion" in out
    assert "waiting for approval" in out
    assert versions(serving) == {"champion": "1", "challenger": "2"}  # nothing promoted yet

    client = MlflowClient(tracking_uri=serving.tracking_uri, registry_uri=serving.tracking_uri)
    new_run = client.get_run(client.get_model_version(serving.name, "2").run_id)
    parent = client.get_run(serving.run_id)
    assert new_run.data.tags["mlops.retrain.parent_run_id"] == serving.run_id
    assert "petal_length" in new_run.data.tags["mlops.retrain.drift"]
    assert new_run.data.params["n_estimators"] == parent.data.params["n_estimators"] == "20"
    assert new_run.data.params["data"].endswith("shifted.csv")
    digests = [i.dataset.digest for r in (new_run, parent) for i in training_inputs(r)]
    assert len(set(digests)) == 2  # the new data is recorded, with its own digest

    from backends.mlflow.registry import Registry

    (challenger_event,) = Registry(serving.tracking_uri).history(serving.name, "challenger")
    assert challenger_event.action == "promote" and challenger_event.to_version == 2
    assert "PSI=" in challenger_event.reason and "not worse" in challenger_event.reason

    # It waits, with what it was judged on and what started it.
    waiting = models_cli(serving, "pending", serving.name, "--json")
    assert waiting.exit_code == 0, waiting.output
    (pending,) = [p for p in json.loads(waiting.stdout) if p["model"] == serving.name]
    assert pending["version"] == 2 and pending["champion_version"] == 1
    assert pending["report"]["passed"] is True
    assert "not worse than champion" in pending["report"]["comparison"]
    assert {c["name"] for c in pending["report"]["checks"]} >= {"no worse than the champion"}
    assert pending["trigger"]["source"] == "cli"
    version_tags = client.get_model_version(serving.name, "2").tags
    assert json.loads(version_tags["mlops.gate.report"])["passed"] is True
    assert json.loads(new_run.data.tags["mlops.gate.report"])["passed"] is True  # the run too
    # The retraining went through the policy the project ships (gate.yaml, copied to the run):
    # its report is on the challenger's run.
    logged = {a.path for a in client.list_artifacts(new_run.info.run_id, "gate")}
    assert {"gate/report.json", "gate/report.txt"} <= logged, logged
    assert "policy" in {c["name"] for c in pending["report"]["checks"]}

    # Only the challenger that waits can be approved, and approving is a person's act.
    wrong = models_cli(serving, "approve", serving.name, "1", "--yes")
    assert wrong.exit_code == 5, wrong.output
    assert "not the challenger waiting" in wrong.stderr
    approved = models_cli(serving, "approve", serving.name, "2", "--yes", user="alice")
    assert approved.exit_code == 0, approved.output
    assert versions(serving) == {"champion": "2", "challenger": "2"}
    approval = Registry(serving.tracking_uri).history(serving.name, "champion")[-1]
    assert (approval.action, approval.who, approval.from_version, approval.to_version) == (
        "approve",
        "alice",
        1,
        2,
    )
    assert "gate report: " in approval.reason and "trigger: started by" in approval.reason
    empty = models_cli(serving, "pending", serving.name)
    assert "no challenger waits for approval" in empty.stdout

    # --approve approves the version that run evaluated (v3), and no other.
    code, doc, steps = cli_json(
        serving, "--if-drift", "--approve", "--data", str(serving.data / "shifted.csv")
    )
    assert code == 0, steps
    assert "champion -> " in steps and "v3 (approved by " in steps  # --json: steps on stderr
    assert (doc["retrained"], doc["outcome"]["challenger_version"]) == (True, 3)
    assert doc["outcome"]["gate_passed"] is True and doc["drift"]["drifted"] is True
    assert (doc["approved"]["action"], doc["approved"]["to_version"]) == ("approve", 3)
    assert versions(serving) == {"champion": "3", "challenger": "3"}
    champion_moves = Registry(serving.tracking_uri).history(serving.name, "champion")
    assert champion_moves[-1].action == "approve" and champion_moves[-1].to_version == 3
    assert champion_moves[-1].reason.startswith("approved with retrain --approve")
    stale = models_cli(serving, "approve", serving.name, "2", "--yes")
    assert stale.exit_code == 5, stale.output


def models_cli(serving: Serving, *args: str, user: str = "") -> Any:
    from console.cli.main import app

    env = {"MLFLOW_TRACKING_URI": serving.tracking_uri}
    if user:
        env["MLOPS_USER"] = user
    return CliRunner().invoke(app, ["models", *args], env=env)


def test_bad_input_is_a_usage_error(serving: Serving) -> None:
    code, out = cli(serving)  # no --data and no --if-drift: nothing to train on
    assert code == 2 and "--data PATH is required" in out
    from console.cli.main import app

    neither = CliRunner().invoke(app, ["retrain"])
    assert neither.exit_code == 2 and "DEPLOYMENT or give --target" in neither.output
    down = CliRunner().invoke(app, ["retrain", "--target", "http://127.0.0.1:9"])
    assert down.exit_code == 3 and "unreachable" in down.output


def test_retrain_from_the_log_trains_on_the_labelled_traffic(serving: Serving) -> None:
    """The loop on real traffic: rows predicted, their labels pushed back, and a challenger
    trained on the logged rows that have labels, both models scored on a held-out part."""
    from mlflow.tracking import MlflowClient

    from console.cli.main import app

    frame = iris_frame()
    with httpx.Client() as http:
        for i, row in enumerate(frame[FEATURES].values.tolist()):
            answer = http.post(
                f"{serving.url}/predict", json={"data": [row]}, headers={"X-Request-Id": f"L{i}"}
            )
            assert answer.status_code == 200
    labels = serving.data / "labels.csv"
    labels.write_text(
        "request_id,index,truth\n" + "".join(f"L{i},0,{t}\n" for i, t in enumerate(frame.target))
    )
    pushed = CliRunner().invoke(app, ["feedback", "push", str(labels), "--url", serving.url])
    assert pushed.exit_code == 0, pushed.output
    assert "150 labels sent" in pushed.stdout

    log_dir = serving.data / "log"
    # Labels reach the log off the request path (the writer comes every 250 ms): wait until
    # all 150 are on disk before reading it.
    eventually(
        lambda: (
            sum(len(f.read_text().splitlines()) for f in log_dir.glob("feedback-*.jsonl")) >= 150
        ),
        "the 150 labels in the log's feedback files",
        timeout=60,
        every=0.2,
    )
    code, out = cli(serving, "--from-log", "--log-dir", str(log_dir), "--tolerance", "0.2")
    assert code == 0, out
    assert "from the prediction log: 150 labelled rows" in out
    assert "waiting for approval" in out or "challenger ->" in out

    client = MlflowClient(tracking_uri=serving.tracking_uri, registry_uri=serving.tracking_uri)
    challenger = client.get_model_version_by_alias(serving.name, "challenger")
    run = client.get_run(challenger.run_id)
    assert run.data.tags["mlops.retrain.source"] == "prediction-log"
    assert run.data.tags["mlops.retrain.log_rows"] == "150"
    assert run.data.params["data"].endswith("train.csv")
    (dataset,) = training_inputs(run)
    assert dataset.dataset.digest  # the logged rows, recorded with their digest

    code, out = cli(serving, "--from-log")  # --target without --log-dir: said, exit 2
    assert code == 2 and "--log-dir" in out
