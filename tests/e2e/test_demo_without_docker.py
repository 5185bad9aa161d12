"""`make demo` on a machine with nothing but python3: no Docker engine, no Prometheus. The
quickstart serves a local process, and the console it opens watches that process by address
(direct scrape): the Monitor shows its latency and drift, and the status bar says Docker is
unreachable rather than the pane going blank."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests import services
from tests.conftest import ROOT
from tests.e2e.tmux import TmuxSession

pytestmark = [pytest.mark.integration, pytest.mark.tmux, pytest.mark.slow]

MISSING = ("docker", "dockerd", "prometheus", "prometheus-alertmanager", "alertmanager", "amtool")


def path_without(folder: Path, names: tuple[str, ...]) -> str:
    """A PATH of one folder holding a link to every command on today's PATH but ``names``:
    the machine as it would be without those packages."""
    folder.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = folder / entry.name
            if entry.name in names or link.exists() or link.is_symlink():
                continue
            if entry.is_file() and os.access(entry.path, os.X_OK):
                link.symlink_to(entry.path)
    return str(folder)


def wait_for_lines(session: TmuxSession, patterns: tuple[str, ...], timeout: float) -> str:
    """Until a line of the screen matches each pattern (a hang guard, not a measurement)."""
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = session.screen()
        lines = screen.splitlines()
        if all(any(re.search(p, line) for line in lines) for p in patterns):
            return screen
        time.sleep(1)
    raise AssertionError(f"not on screen within {timeout:.0f} s: {patterns}\n{screen}")


def test_make_demo_with_neither_docker_nor_prometheus_ends_on_a_monitor_with_figures(
    tmp_path: Path,
) -> None:
    # `make demo` as a new user runs it, in a directory of its own: the checkout's Makefile,
    # lock and venv (made already), nothing else.
    stamp = ROOT / ".venv" / ".installed"
    for source in ("requirements.lock", "pyproject.toml"):
        # Else make would build the venv again, from here: an editable install of this folder.
        assert stamp.stat().st_mtime >= (ROOT / source).stat().st_mtime, "run `make venv` first"
    work = tmp_path / "demo"
    work.mkdir()
    for name in ("Makefile", "requirements.lock", "pyproject.toml", ".venv"):
        (work / name).symlink_to(ROOT / name)
    bin_dir = path_without(tmp_path / "bin", MISSING)
    env = {
        "PATH": bin_dir,
        "HOME": str(tmp_path),
        "TERM": "xterm-256color",
        # No engine: a socket that is not there, as on a machine without Docker.
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "MLOPS_STATE_DIR": str(tmp_path / "state"),
        "MLOPS_CACHE_DIR": str(tmp_path / "cache"),
        "MLOPS_CONFIG": str(tmp_path / "no-config.toml"),
    }
    for name in MISSING:
        assert not (Path(bin_dir) / name).exists()
    session = TmuxSession("make demo", width=160, height=48, cwd=str(work), env=env)
    try:
        session.wait_for("as a local process (pid", timeout=600)
        session.wait_for("no prometheus binary", timeout=120)
        session.wait_for("context: local", timeout=300)  # the console is up, on the Monitor
        # The local server's row with latency figures (p50/p95/p99 in ms), and a drift figure
        # for petal_length, the feature the quickstart shifts: numbers, not dashes.
        screen = wait_for_lines(
            session,
            (r"quickstart .*\d+(\.\d+)?\s*ms", r"petal_length .*\d\.\d"),
            timeout=300,
        )
        assert "Docker" in screen and "unreachable" in screen  # said, not a blank pane
    except AssertionError:
        print(session.screen())
        raise
    finally:
        session.close()
        subprocess.run(
            [str(ROOT / ".venv" / "bin" / "mlops"), "quickstart", "--stop"],
            cwd=work,
            env={**env, "PATH": services.VENV_BIN + os.pathsep + bin_dir},
            capture_output=True,
            timeout=120,
        )
