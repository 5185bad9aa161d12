"""Processes `mlops quickstart` leaves running: a local model server, Prometheus, traffic.

Each is recorded in a state file of the quickstart's own tracking store (one per working
directory: ``<state>/quickstart/<store>/pids.json``) with the process's start time, so that
``mlops quickstart --stop`` ends exactly what that quickstart started: never a process of
another directory's quickstart, and never an unrelated process that reused a recorded PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from backends import ports
from backends.errors import BackendError

__all__ = ["Background", "free_port", "spawn", "state_dir", "stop_all"]


def state_dir(store: str) -> Path:
    """Where the quickstart of tracking store ``store`` keeps its logs and PIDs."""
    base = os.environ.get("MLOPS_STATE_DIR") or os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path.home() / ".local" / "state"
    top = root if os.environ.get("MLOPS_STATE_DIR") else root / "mlops-console"
    path = top / "quickstart" / store
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port(preferred: int) -> int:
    """``preferred`` if it is free on loopback, else another (``backends.ports``)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return ports.free_port()
    return preferred


@dataclass(frozen=True)
class Background:
    """A process started in the background, in its own session (its group is ``pid``)."""

    name: str
    pid: int
    url: str
    log: Path


def _started_at(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    return stat.rsplit(")", 1)[1].split()[19]


def _pids_file(store: str) -> Path:
    return state_dir(store) / "pids.json"


def remember(store: str, proc: Background) -> None:
    """Record ``proc`` (with its start time) in the store's state file."""
    path = _pids_file(store)
    known = json.loads(path.read_text()) if path.is_file() else {}
    known[proc.name] = {
        "pid": proc.pid,
        "started": _started_at(proc.pid),
        "url": proc.url,
        "log": str(proc.log),
    }
    path.write_text(json.dumps(known, indent=2))


def stop_all(store: str) -> list[str]:
    """End the processes the store's quickstart started (each only if it is still the very
    process that was started); returns what was stopped."""
    path = _pids_file(store)
    if not path.is_file():
        return []
    stopped = []
    try:
        known = json.loads(path.read_text())
    except ValueError:
        known = {}
    for name, info in known.items():
        try:
            pid = int(info["pid"])
        except (KeyError, TypeError, ValueError):
            continue
        started = _started_at(pid)
        if started is None or started != info.get("started"):
            continue  # gone, or the PID now belongs to someone else's process
        try:
            os.killpg(pid, signal.SIGTERM)
            stopped.append(f"{name} (pid {pid})")
        except (ProcessLookupError, PermissionError):
            pass
    path.unlink()
    return stopped


def spawn(
    store: str,
    name: str,
    cmd: list[str],
    env: dict[str, str],
    base_url: str,
    ready_path: str | None,
    timeout: float = 90,
) -> Background:
    """Start ``cmd`` in the background, remember it, and wait until ``ready_path`` answers."""
    log = state_dir(store) / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
    handle = Background(name, proc.pid, base_url, log)
    remember(store, handle)
    if ready_path is None:
        return handle
    ready_url = base_url + ready_path
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
            raise BackendError(f"{name} exited on start:\n{tail}", title=f"{name} failed")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise BackendError(
        f"{name} not ready after {timeout:.0f}s (log: {log})", title=f"{name} failed"
    )
