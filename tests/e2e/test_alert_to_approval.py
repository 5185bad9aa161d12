"""The loop closed, end to end, with every real component: drifted traffic to a served model →
Prometheus fires MlopsFeatureDrift → Alertmanager → its webhook → `mlops hooks serve` trains
and gates a challenger → the console (in tmux) announces it and shows it pending → a person
approves it → champion moves; the history names the alert, the gate report and the approver."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.conftest import FEATURES, ROOT, iris_frame
from tests.e2e.tmux import TmuxSession


@pytest.fixture(autouse=True)
def _needs_alertmanager() -> None:
    services.alertmanager_binary()  # skip (locally) or fail (CI) before the slow part


pytestmark = [
    pytest.mark.integration,
    pytest.mark.mlflow_server,
    pytest.mark.prometheus,
    pytest.mark.tmux,
    pytest.mark.slow,
]

MLOPS = Path(sys.executable).parent / "mlops"


def wait(condition: object, what: str, hang_guard: float, every: float = 0.5) -> object:
    """Until ``condition()`` is truthy; the guard only stops a hung test, it measures nothing."""
    deadline = time.monotonic() + hang_guard
    while time.monotonic() < deadline:
        found = condition()  # type: ignore[operator]
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within the {hang_guard:.0f} s hang guard")


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[services.MlflowServer]:
    """A tracking server of its own: the console announces every waiting challenger of the
    registry, and the shared one holds other tests' challengers."""
    root = tmp_path / "mlflow"
    root.mkdir()
    server = services.start_mlflow_server(root)
    try:
        yield server
    finally:
        services.stop(server)


def test_drift_alert_retrains_and_a_person_approves_in_the_console(
    mlflow_server: services.MlflowServer, tmp_path: Path
) -> None:
    from backends.mlflow.registry import Registry

    name = f"loop-{uuid.uuid4().hex[:6]}"
    deployment = f"web-{name}"
    env = services.env_with_venv_on_path(MLFLOW_TRACKING_URI=mlflow_server.url)
    env.pop("PROMETHEUS_URL", None)
    env.pop("ALERTMANAGER_URL", None)

    # A champion, trained by the example project, served by our server.
    run = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(ROOT / "examples" / "iris"),
         "--env-manager", "local", "--experiment-name", name, "-P", "n_estimators=20"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    run_id = re.search(r"run_id=([0-9a-f]{32})", run.stdout).group(1)  # type: ignore[union-attr]
    registry = Registry(mlflow_server.url, user="setup")
    registry.promote(name, registry.register(run_id, name).version, reason="first")
    frame = iris_frame()
    shifted = tmp_path / "recent.csv"
    frame.assign(petal_length=frame.petal_length + 3.0).to_csv(shifted, index=False)
    url, server = services.start_model_server(
        f"{name}@champion",
        tmp_path / "server.log",
        MLFLOW_TRACKING_URI=mlflow_server.url,
        MLOPS_DRIFT_INTERVAL="0.5",
        MLOPS_DRIFT_WINDOW="150",
    )
    procs: list[subprocess.Popen[bytes]] = [server]
    stop_traffic = threading.Event()
    session: TmuxSession | None = None
    try:
        address = url.removeprefix("http://")
        targets = tmp_path / "targets.json"
        group = {"targets": [address], "labels": {"deployment": deployment, "model": name}}
        targets.write_text(json.dumps([group]))

        # The receiver, with its own token; Alertmanager with the shipped routes pointing at it.
        token_file = tmp_path / "hooks-token"
        hooks_port = services.free_port()
        hooks_log = tmp_path / "hooks.log"
        hooks = services._spawn(
            [str(MLOPS), "hooks", "serve", "--data", str(shifted), "--port", str(hooks_port),
             "--token-file", str(token_file), "--targets", str(targets), "--debounce", "0"],
            hooks_log, tmp_path, **{**env, "MLOPS_USER": "hooks", "DOCKER_HOST": "unix:///nonexistent"},
        )  # fmt: skip
        procs.append(hooks)
        services.remember_log("mlops hooks serve", hooks_log)
        services._wait_http(f"http://127.0.0.1:{hooks_port}/health", hooks, hooks_log, 60, "hooks")
        am_root = tmp_path / "am"
        am_root.mkdir()
        am = services.start_alertmanager(
            am_root,
            services.fast_alertmanager_config(
                f"http://127.0.0.1:{hooks_port}/hooks/alertmanager", token_file
            ),
        )
        procs.append(am.process)  # type: ignore[arg-type]
        prom_root = tmp_path / "prom"
        prom_root.mkdir()
        prom = services.start_prometheus(
            prom_root, [services.fast_rules(prom_root)], alertmanager=am.url.removeprefix("http://")
        )
        procs.append(prom.process)  # type: ignore[arg-type]
        prom.set_targets([group])

        # Drifted traffic, until the loop has done its part.
        def traffic() -> None:
            rows = frame[FEATURES].assign(petal_length=frame.petal_length + 3.0).values.tolist()
            with httpx.Client(timeout=10) as http:
                while not stop_traffic.is_set():
                    for row in rows[:20]:
                        http.post(f"{url}/predict", json={"data": [row]})
                    stop_traffic.wait(0.5)

        threading.Thread(target=traffic, daemon=True).start()

        # Alertmanager got the alert and sent it on: the hooks server started a retraining.
        wait(
            lambda: "MlopsFeatureDrift for " + deployment + ": started" in hooks_log.read_text(),
            "the hooks server started the retraining",
            hang_guard=240,
        )
        pending = wait(
            # Its trigger is on it before the alias moves; its gate report comes just after.
            lambda: [p for p in registry.pending_approvals(name) if p.report is not None],
            "a challenger waiting for approval",
            hang_guard=400,
            every=2,
        )
        stop_traffic.set()
        (waiting,) = pending  # type: ignore[misc]
        assert waiting.champion_version == 1 and waiting.version == 2
        assert waiting.trigger is not None and waiting.trigger.alert == "MlopsFeatureDrift"
        assert waiting.trigger.labels["deployment"] == deployment
        assert waiting.trigger.source == "alertmanager" and waiting.trigger.starts_at
        assert waiting.report is not None and waiting.report.passed
        client = registry.client
        new_run = client.get_run(client.get_model_version(name, "2").run_id)
        trigger = json.loads(new_run.data.tags["mlops.retrain.trigger"])
        assert trigger["alert"] == "MlopsFeatureDrift"
        assert registry.alias_state(name).version == 1  # nothing approved itself

        # A person, in the console: the notice, the marked version, the dialog, the approval.
        session = TmuxSession(
            str(MLOPS),
            width=150,
            height=44,
            cwd=str(tmp_path),
            env={
                "MLFLOW_TRACKING_URI": mlflow_server.url,
                "MLOPS_USER": "carol",
                "TERM": "xterm-256color",
                "DOCKER_HOST": "unix:///nonexistent",
            },
        )
        session.wait_for(f"{name} v2 waits for approval", timeout=60)
        session.send(":")
        session.wait_for("runs | models")
        session.send("models", "Enter")
        session.wait_for("registered model", timeout=30)
        session.filter_rows(name)
        session.wait_for(f"filter: {name}", timeout=10)
        session.wait_for("waits for approval (A)", timeout=30)
        session.send("A")
        session.wait_for(f"Approve {name} v2?", timeout=30)
        dialog = session.screen()
        assert "alert MlopsFeatureDrift" in dialog and "gate report" in dialog
        session.send("y")
        wait(lambda: registry.alias_state(name).version == 2, "champion moved", hang_guard=120)
        session.wait_for(f"champion of {name}: v1 → v2", timeout=30)
        assert "Traceback" not in session.screen()

        history = registry.history(name)
        challenger = next(e for e in history if e.alias == "challenger")
        assert challenger.who == "hooks" and "trigger: alert MlopsFeatureDrift" in challenger.reason
        approval = [e for e in history if e.alias == "champion"][-1]
        assert (approval.action, approval.who, approval.to_version) == ("approve", "carol", 2)
        assert "trigger: alert MlopsFeatureDrift" in approval.reason
        assert "gate report: " in approval.reason
        shown = subprocess.run(
            [str(MLOPS), "models", "history", name], capture_output=True, text=True, env=env,
            timeout=120,
        )  # fmt: skip
        assert "approve" in shown.stdout and "carol" in shown.stdout, shown.stdout
    finally:
        stop_traffic.set()
        if session is not None:
            session.close()
        for proc in reversed(procs):
            services._stop(proc)
        os.sync()
