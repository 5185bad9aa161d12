"""`mlops train` end to end: the real CLI, the real MLflow Project runner, a real server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.cli.exit_codes import ExitCode
from tests import services
from tests.cli_load import mlops

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["-P", "n_estimators=5", "-P", "max_depth=3", "-P", "seed=7"]


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    """Where logs and the run index go for this test."""
    return {"MLOPS_STATE_DIR": str(tmp_path / "state"), "MLOPS_CACHE_DIR": str(tmp_path / "cache")}


def final_run_id(out: str) -> str:
    match = re.search(r"^run_id=([0-9a-f]{32}) status=(\w+)", out, re.MULTILINE)
    assert match, out[-3000:]
    return match.group(1)


def test_train_streams_logs_exits_0_and_is_reproducible(
    tracking_uri: str, experiment_name: str, state: dict[str, str]
) -> None:
    from mlflow.tracking import MlflowClient

    env = {**state, "MLFLOW_TRACKING_URI": tracking_uri}
    first = mlops("train", "-e", experiment_name, *SMALL, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_id = final_run_id(first.stdout)
    assert f"status=FINISHED experiment={experiment_name}" in first.stdout
    # The training's own output was streamed through us.
    assert re.search(rf"^run_id={run_id} accuracy=", first.stdout, re.MULTILINE)
    log = Path(state["MLOPS_STATE_DIR"]) / "logs" / f"{run_id}.log"
    assert "train.py --n-estimators 5" in log.read_text()
    client = MlflowClient(tracking_uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert "mlops" in [a.path for a in client.list_artifacts(run_id)]

    # `runs logs` reads the artifact when the local file is not there (another machine).
    log.unlink()
    logs = mlops("runs", "logs", run_id, env=env)
    assert logs.returncode == 0 and "=== mlops: training exited with status 0" in logs.stdout

    model = f"{experiment_name}-model"
    second = mlops("train", "-e", experiment_name, *SMALL, "-q", "--register-as", model, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "accuracy=" not in second.stdout  # --quiet: the summary lines only
    other = final_run_id(second.stdout)
    assert f"registered {model} version 1" in second.stdout
    (version,) = client.search_model_versions(f"name = '{model}'")
    assert version.run_id == other

    compared = mlops("runs", "compare", run_id, other, "--json", env=env)
    assert compared.returncode == 0, compared.stderr
    doc = json.loads(compared.stdout)
    assert doc["same_data"] is True and doc["params_differ"] == []
    metrics = {m["key"]: m["values"] for m in doc["metrics"]}
    assert set(metrics) == {"accuracy", "f1"}
    assert all(values[0] == values[1] for values in metrics.values())  # same params, same data

    shown = mlops("runs", "show", run_id, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["run"]["params"]["n_estimators"] == "5"
    assert detail["git_commit"] and detail["run"]["status"] == "FINISHED"
    datasets = {d["name"]: d for d in detail["run"]["datasets"]}
    assert set(datasets) == {"iris", "iris-held-out"} and datasets["iris"]["digest"]
    assert [m["name"] for m in detail["models"]] == ["model"]
    assert detail["models"][0]["uri"].startswith("models:/m-")
    assert {"drift_reference.json", "mlops"} <= {a["path"] for a in detail["artifacts"]}
    table = mlops("runs", "show", run_id, env=env)
    assert "git commit" in table.stdout and "digest" in table.stdout


def test_failed_training_exits_nonzero_and_marks_the_run_failed(
    tracking_uri: str, experiment_name: str, state: dict[str, str], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    env = {**state, "MLFLOW_TRACKING_URI": tracking_uri}
    missing = f"data={tmp_path / 'nope.csv'}"
    proc = mlops("train", "-e", experiment_name, "-P", missing, "--json", env=env)
    assert proc.returncode not in (0, None)
    # --json: the training's output on stderr, and on stdout only the document, FAILED in it.
    assert "data file not found" in proc.stderr
    outcome = json.loads(proc.stdout)
    assert (outcome["status"], outcome["exit_code"]) == ("FAILED", proc.returncode)
    run_id = outcome["run_id"]
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "FAILED"
    assert f"training exited with status {proc.returncode}" in proc.stderr


def test_detach_returns_the_run_id_and_logs_follow(
    tracking_uri: str, experiment_name: str, state: dict[str, str]
) -> None:
    from mlflow.tracking import MlflowClient

    env = {**state, "MLFLOW_TRACKING_URI": tracking_uri}
    proc = mlops("train", "--detach", "-e", experiment_name, *SMALL, env=env, timeout=300)
    returned_at = time.time()
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", run_id) and "--follow" in proc.stderr
    client = MlflowClient(tracking_uri)
    assert client.get_run(run_id).info.status in ("RUNNING", "FINISHED")
    followed = mlops("runs", "logs", run_id, "--follow", env=env, timeout=300)
    assert followed.returncode == 0
    # The run id came as soon as MLflow created the run, not at the end: told by the order of
    # events (the training ended after the command had returned), not by a clock's reading.
    ended = client.get_run(run_id).info.end_time
    assert ended is not None and ended / 1000 > returned_at, (ended, returned_at)
    assert "=== mlops: training exited with status 0" in followed.stdout
    assert re.search(rf"run_id={run_id} accuracy=", followed.stdout)
    deadline = time.monotonic() + 60  # the background process uploads the log last
    while "mlops" not in [a.path for a in client.list_artifacts(run_id)]:
        assert time.monotonic() < deadline, "the training log was never uploaded"
        time.sleep(0.5)
    assert client.get_run(run_id).info.status == "FINISHED"


def test_train_against_the_default_sqlite_store(tmp_path: Path, state: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(state)
    cwd = tmp_path / "work"
    cwd.mkdir()
    project = ROOT / "examples" / "iris"
    base = [sys.executable, "-c", "from console.cli.main import run; run()"]
    proc = subprocess.run(
        [*base, "train", str(project), "-P", "n_estimators=3", "-q", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    outcome = json.loads(proc.stdout)
    run_id = outcome["run_id"]
    assert (outcome["status"], outcome["exit_code"], outcome["registered"]) == ("FINISHED", 0, None)
    assert (cwd / "mlflow.db").is_file()  # the relative default, not examples/iris/mlflow.db
    assert not (project / "mlflow.db").exists()
    listed = subprocess.run(
        [*base, "runs", "list", "--json"], capture_output=True, text=True, cwd=cwd, env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)["runs"]] == [run_id]


def test_bad_invocations(tracking_uri: str, state: dict[str, str], tmp_path: Path) -> None:
    env = {**state, "MLFLOW_TRACKING_URI": tracking_uri}
    assert mlops("train", str(tmp_path), env=env).returncode == ExitCode.USAGE
    assert mlops("train", "-P", "oops", env=env).returncode == ExitCode.USAGE
    with services.CountingDeadEnd() as dead:  # counted, not timed: one attempt, no retries
        proc = mlops("train", env={**state, "MLFLOW_TRACKING_URI": dead.url})
        assert proc.returncode == ExitCode.UNREACHABLE and dead.url in proc.stderr
        assert dead.connections == 1
    proc = mlops("runs", "logs", "0" * 32, env=env)
    assert proc.returncode == ExitCode.NOT_FOUND, proc.stderr


def test_a_run_holds_what_mlflow_run_records_without_importing_mlflow_here(
    tracking_uri: str, experiment_name: str, state: dict[str, str]
) -> None:
    """`mlops train` creates the run itself instead of through MLflow's runner: the run must
    carry what `mlflow run` records (source, entry point, git commit, parameters), and the
    process that made it must not have imported MLflow (the entry point does, once)."""
    from mlflow.tracking import MlflowClient

    env = {**state, "MLFLOW_TRACKING_URI": tracking_uri}
    ours = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            "from console.cli.main import run; run()",
            "train",
            "-e",
            experiment_name,
            *SMALL,
            "-q",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=services.env_with_venv_on_path(**env),
    )
    assert ours.returncode == 0, ours.stdout[-2000:] + ours.stderr[-3000:]
    imported = re.findall(r"\|\s+(mlflow(?:\.\w+)*)$", ours.stderr, re.MULTILINE)
    assert "mlflow" not in imported, imported[:5]
    assert "yaml" in re.findall(r"\|\s+(\w+)$", ours.stderr, re.MULTILINE)  # the log was read
    our_id = json.loads(ours.stdout)["run_id"]

    theirs = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(ROOT / "examples" / "iris"),
            "--env-manager",
            "local",
            "--experiment-name",
            experiment_name,
            *SMALL,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=services.env_with_venv_on_path(**env),
    )
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    match = re.search(r"in run with ID '([0-9a-f]{32})'", theirs.stderr + theirs.stdout)
    assert match, theirs.stderr[-2000:]
    client = MlflowClient(tracking_uri)
    our_run, their_run = client.get_run(our_id), client.get_run(match.group(1))
    keys = {k for k in their_run.data.tags if k.startswith(("mlflow.source", "mlflow.project"))}
    keys |= {"mlflow.user"}
    assert {"mlflow.source.name", "mlflow.source.git.commit", "mlflow.project.entryPoint"} <= keys
    assert {k: our_run.data.tags.get(k) for k in keys} == {
        k: their_run.data.tags.get(k) for k in keys
    }
    assert our_run.data.params == their_run.data.params
    assert our_run.info.experiment_id == their_run.info.experiment_id
    assert (our_run.info.status, their_run.info.status) == ("FINISHED", "FINISHED")
    assert our_run.data.metrics == their_run.data.metrics  # same seed, same data, same model


def test_an_interrupt_stops_the_whole_entry_point_and_marks_the_run_killed(
    tracking_uri: str, experiment_name: str, state: dict[str, str], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    project = tmp_path / "slow"
    project.mkdir()
    (project / "MLproject").write_text(
        "name: slow\nentry_points:\n  main:\n    command: python slow.py\n"
    )
    # The entry point starts a process of its own: an interrupt must reach it too.
    (project / "slow.py").write_text(
        "import pathlib, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        "pathlib.Path('child.pid').write_text(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    env = {**state, "MLFLOW_TRACKING_URI": tracking_uri}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            # Ctrl-C as a terminal's shell gives it: an xdist worker ignores SIGINT, and an
            # ignored signal is inherited, so the command would never see the interrupt.
            "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from console.cli.main import run; run()",
            "train",
            str(project),
            "-e",
            experiment_name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=services.env_with_venv_on_path(**env),
    )
    try:
        pid_file = project / "child.pid"
        deadline = time.monotonic() + 120
        while not pid_file.is_file() or not pid_file.read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the entry point never started"
            time.sleep(0.2)
        grandchild = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends the console's process
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    run_id = final_run_id(out)
    assert f"run_id={run_id} status=KILLED" in out
    assert MlflowClient(tracking_uri).get_run(run_id).info.status == "KILLED"
    deadline = time.monotonic() + 30
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the entry point's own child outlived the interrupt"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purpose.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
