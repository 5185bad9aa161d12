"""The console in a real terminal through tmux: the embedded default, and a real tracking server."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.tmux import TmuxSession

pytestmark = pytest.mark.tmux

MLOPS = Path(sys.executable).parent / "mlops"


def test_the_console_leaves_when_its_terminal_hangs_up_under_a_wrapper(tmp_path: Path) -> None:
    """An SSH session that drops while the console runs under `make demo` or a script: the
    wrapper takes the hang-up, no SIGHUP reaches the console, and Textual's input thread would
    read the dead terminal's end-of-file for ever (half a core each, found left over from test
    runs). The console sees its terminal go and leaves."""
    import os
    import subprocess

    from tests.waiting import eventually

    (tmp_path / "Makefile").write_text(f"console:\n\t{MLOPS}\n")
    session = TmuxSession(
        "make console",  # as `make demo` runs it: make takes the hang-up
        width=100,
        height=30,
        cwd=str(tmp_path),
        env={"MLOPS_CONTEXT": "e2e", "TERM": "xterm-256color"},
    )
    try:
        session.wait_for("context: e2e")
        make = subprocess.run(
            [*session.tmux, "list-panes", "-t", session.name, "-F", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[0]
        children = Path(f"/proc/{make}/task/{make}/children").read_text().split()
        (console,) = [int(c) for c in children]
    finally:
        session.close()

    def gone() -> bool:
        try:
            os.kill(console, 0)
        except ProcessLookupError:
            return True
        # A zombie is gone too: nobody is left to reap it once make is.
        return Path(f"/proc/{console}/stat").read_text().split()[2] == "Z"

    eventually(gone, "the console to leave its hung-up terminal", timeout=120)


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
        session.wait_for("registered model", timeout=30)  # the models screen's own status
        session.wait_for(model, timeout=30)
        # Other tests' models share the registry: `/` narrows the list to this test's model.
        session.filter_rows(model)
        session.wait_for(f"filter: {model}", timeout=10)
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


# The train form's rows in focus order, and the MLproject's defaults of those left alone.
TRAIN_ROWS = [
    "n_estimators (int)",
    "max_depth (int)",
    "seed (int)",
    "test_size (float)",
    "data (string)",
    "reference_sample (int)",
    "register as",
]
DEFAULTS = {
    "max_depth (int)": "0",
    "seed (int)": "42",
    "test_size (float)": "0.2",
    "data (string)": "bundled:iris",
    "reference_sample (int)": "500",
}


@pytest.mark.mlflow_server
@pytest.mark.integration
def test_train_twice_compare_promote_and_roll_back_against_a_real_server(
    tracking_uri: str, experiment_name: str, tmp_path: Path
) -> None:
    """The issue's whole path by keyboard: two trainings from the form (each registered), the
    two runs compared, both versions promoted in turn, then champion rolled back."""
    model = f"e2e-{uuid.uuid4().hex[:6]}"
    session = TmuxSession(
        str(MLOPS),
        width=140,
        height=44,
        cwd=str(tmp_path),
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": experiment_name,
            "MLOPS_CONTEXT": "e2e",
            "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
            "MLOPS_STATE_DIR": str(tmp_path / "state"),
            "TERM": "xterm-256color",
        },
    )
    try:
        session.wait_for("MLflow connected", timeout=30)
        for version, trees in ((1, "10"), (2, "30")):
            session.send("t")
            session.wait_for("parameters from its MLproject", timeout=20)  # the form is ready
            # Tab by Tab, looking at the screen between keys (tmux.py says why).
            session.fill(
                TRAIN_ROWS,
                {"n_estimators (int)": trees, **DEFAULTS, "register as": model},
                placeholders={"register as": "model name (optional)"},
            )
            session.press("C-s")
            session.wait_for("Register the model?", timeout=180)  # trained and logged
            assert "FINISHED, exit 0" in session.screen()
            session.send("y")
            session.wait_for(f"registered {model} version {version}", timeout=60)
            session.send("Escape")
            session.wait_for(f"experiment {experiment_name} · {version} runs", timeout=30)

        session.send("Space", "Space", "c")  # mark both runs, compare them
        session.wait_for("params that differ", timeout=30)
        screen = session.wait_for("n_estimators", timeout=30)  # the comparison arrived
        assert "10" in screen and "30" in screen and "★ " in screen
        session.send("Escape")
        session.wait_for(f"experiment {experiment_name}")

        session.send(":")
        session.wait_for("runs | models")
        session.send("models", "Enter")
        session.wait_for("registered model", timeout=30)  # the models screen's own status
        session.wait_for(model, timeout=30)
        # Other tests' models share the registry: `/` narrows the list to this test's model.
        session.filter_rows(model)
        session.wait_for(f"filter: {model}", timeout=10)
        session.wait_for_count("READY", 2, timeout=30)  # both versions are in the table
        session.press("Tab", "Down")  # the versions table, newest first: down to v1
        for version in (1, 2):
            session.promote_dialog(model, version)
            # The dialog shows what the project's policy (gate.yaml, copied to the run by the
            # training) found on the held-out rows, before the person confirms.
            session.wait_for("policy: PASSED", timeout=60)
            session.wait_for("held-out split iris-held-out", timeout=10)
            session.send("y")
            session.wait_for("Gate passed", timeout=90)
            session.send("Enter")
            session.wait_for(f"champion=v{version}", timeout=30)
            session.wait_gone(f"Promote {model}?")  # keys go to the table again
            session.press("Up")
        session.send("r")
        screen = session.wait_for(f"Roll back {model}?")
        assert "from version 2" in screen and "to   version 1" in screen
        session.send("y")
        session.wait_for(f"champion of {model}: v2 → v1", timeout=30)
        session.wait_for("champion=v1", timeout=30)
        session.send("h")  # the alias history: two promotions, then the rollback
        screen = session.wait_for("rollback", timeout=30)
        assert screen.count("promote") >= 2
        session.press("Escape", pause=0.3)
        session.quit()
        assert "Traceback" not in session.screen()
    finally:
        session.close()


@pytest.mark.mlflow_server
@pytest.mark.integration
def test_a_promote_confirmed_after_a_move_from_another_shell_is_refused(
    tracking_uri: str, experiment_name: str, tmp_path: Path
) -> None:
    """The dialog shows "from version 1"; bob moves the alias from another shell before `y`:
    the console refuses in a dialog naming bob, and nothing of alice's moves."""
    import mlflow

    from backends.mlflow.registry import Registry
    from tests.models import log_version

    model = f"e2e-{uuid.uuid4().hex[:6]}"
    experiment_id = mlflow.MlflowClient(tracking_uri).create_experiment(experiment_name)
    for seed in (1, 2, 3):
        log_version(experiment_id, model, seed, False, tmp_path)
    Registry(tracking_uri, user="setup").promote(model, 1, reason="start")
    session = TmuxSession(
        str(MLOPS),
        width=140,
        height=40,
        cwd=str(tmp_path),
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": experiment_name,
            "MLOPS_CONTEXT": "e2e",
            "MLOPS_USER": "alice",
            "TERM": "xterm-256color",
        },
    )
    try:
        session.wait_for("MLflow connected")
        session.send(":")
        session.wait_for("runs | models")
        session.send("models", "Enter")
        session.wait_for(model)
        session.filter_rows(model)
        session.wait_for(f"filter: {model}")
        session.wait_for_count("READY", 3)
        session.press("Tab", "Down")  # newest first: v3, then v2
        screen = session.promote_dialog(model, 2)
        assert "from version 1" in screen and "to   version 2" in screen
        Registry(tracking_uri, user="bob").promote(model, 3, reason="from another shell")
        session.send("y")
        screen = session.wait_for("Conflict")
        assert "bob" in screen  # the dialog names who moved it
        assert Registry(tracking_uri).alias_state(model, "champion").version == 3
        session.press("Enter")
        session.wait_gone("Conflict")
        session.press("Escape", pause=0.3)
        session.quit()
        assert "Traceback" not in session.screen()
    finally:
        session.close()
