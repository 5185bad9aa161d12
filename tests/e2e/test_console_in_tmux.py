"""`mlops` with no arguments opens the console in a real terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.e2e.tmux import TmuxSession

pytestmark = pytest.mark.tmux


def test_mlops_opens_the_console_and_quits(tmp_path: Path) -> None:
    mlops = Path(sys.executable).parent / "mlops"
    session = TmuxSession(
        str(mlops),
        width=100,
        height=30,
        cwd=str(tmp_path),
        env={"MLOPS_CONTEXT": "e2e", "TERM": "xterm-256color"},
    )
    try:
        screen = session.wait_for("MLflow tracking")
        assert "sqlite:///mlflow.db" in screen
        assert "context: e2e" in screen
        session.send("q")
        session.wait_exit()
        assert "Traceback" not in session.screen()
    finally:
        session.close()
