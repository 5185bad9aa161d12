"""The quickstart's processes: per tracking store (one per working directory), and `--stop`
never signals a process it did not start, even one that reuses a recorded PID."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backends.lifecycle import background
from tests.waiting import eventually


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    return tmp_path


def sleeper(store: str) -> background.Background:
    cmd = [sys.executable, "-c", "import time; time.sleep(60)"]
    return background.spawn(store, "sleeper", cmd, {}, "http://x", None)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def test_each_store_stops_only_what_it_started() -> None:
    mine, theirs = sleeper("store-a"), sleeper("store-b")
    try:
        assert background.stop_all("store-a") == [f"sleeper (pid {mine.pid})"]
        eventually(lambda: not alive(mine.pid), "the stopped sleeper gone", timeout=30, every=0.05)
        assert alive(theirs.pid)
        assert background.stop_all("store-a") == []  # its state is gone with it
    finally:
        background.stop_all("store-b")


def test_a_recorded_pid_now_used_by_another_process_is_left_alone(state: Path) -> None:
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        # The state says "our server was this PID", but it started at another time: the PID
        # was reused by someone else's process since.
        pids = background.state_dir("store-a") / "pids.json"
        record = {"pid": stranger.pid, "started": "1", "url": "", "log": ""}
        pids.write_text(json.dumps({"server": record}))
        assert background.stop_all("store-a") == []
        time.sleep(0.2)
        assert stranger.poll() is None  # still running
    finally:
        stranger.kill()
        stranger.wait()
