"""The console in a real terminal through tmux: the embedded default, and a real tracking server."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.tmux import TmuxSession

pytestmark = pytest.mark.tmux

MLOPS = Path(sys.executable).parent / "mlops"


def test_mlops_opens_the_console_and_quits(tmp_path: Path) -> None:
    session = TmuxSession(
        str(MLOPS),
        width=100,
        height=30,
        cwd=str(tmp_path),
        env={"MLOPS_CONTEXT": "e2e", "TERM": "xterm-256color"},
    )
    try:
        session.wait_for("context: e2e")
        session.wait_for("experiment Default", timeout=30)  # no `iris` yet: Default
        session.wait_for("MLflow connected", timeout=30)
        session.send("q")
        session.wait_exit()
        assert "Traceback" not in session.screen()
    finally:
        session.close()


@pytest.mark.mlflow_server
@pytest.mark.integration
def test_runs_then_models_then_promote_against_a_real_server(
    tracking_uri: str, experiment_name: str, tmp_path: Path
) -> None:
    import mlflow

    from tests.models import log_version

    model = f"e2e-{uuid.uuid4().hex[:6]}"
    experiment_id = mlflow.MlflowClient(tracking_uri).create_experiment(experiment_name)
    log_version(experiment_id, model, 1, False, tmp_path)

    session = TmuxSession(
        str(MLOPS),
        width=120,
        height=36,
        cwd=str(tmp_path),
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": experiment_name,
            "MLOPS_CONTEXT": "prod",
            "TERM": "xterm-256color",
        },
    )
    try:
        session.wait_for("PRODUCTION")
        session.wait_for(f"experiment {experiment_name} · 1 runs", timeout=40)
        session.send(":")
        session.wait_for("runs | models")
        session.send("models", "Enter")
        session.wait_for(model, timeout=30)
        session.wait_for("READY", timeout=30)  # its versions arrived
        session.send("p")
        session.wait_for(f"Promote {model}?")
        assert "to   version 1" in session.screen()
        session.send("y")
        session.wait_for("Gate passed", timeout=60)
        session.send("Enter")
        session.wait_for("champion  READY", timeout=30)
        session.send("q")
        session.wait_exit()
        assert "Traceback" not in session.screen()
    finally:
        session.close()
