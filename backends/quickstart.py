"""The pieces `mlops quickstart` runs: a local server or Prometheus in the background, and traffic.

Background processes started here are recorded in ``<state>/quickstart/pids.json`` so that
``mlops quickstart --stop`` ends exactly them (and nothing else).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backends.discovery import render_groups, target_groups
from backends.errors import BackendError, Unavailable
from backends.records import ScrapeTarget

REPO_ROOT = Path(__file__).resolve().parent.parent
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DEMO_FOR = "10s"  # the shipped rules wait minutes before firing; the demo wants it in a minute


def state_dir() -> Path:
    base = os.environ.get("MLOPS_STATE_DIR") or os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path.home() / ".local" / "state"
    path = (root if os.environ.get("MLOPS_STATE_DIR") else root / "mlops-console") / "quickstart"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise BackendError("no free port on 127.0.0.1")


@dataclass(frozen=True)
class Background:
    name: str
    pid: int
    url: str
    log: Path


def _remember(proc: Background) -> None:
    pids = state_dir() / "pids.json"
    known = json.loads(pids.read_text()) if pids.is_file() else {}
    known[proc.name] = {"pid": proc.pid, "url": proc.url, "log": str(proc.log)}
    pids.write_text(json.dumps(known, indent=2))


def stop_background() -> list[str]:
    """End the processes an earlier quickstart started; returns what was stopped."""
    pids = state_dir() / "pids.json"
    if not pids.is_file():
        return []
    stopped = []
    for name, info in json.loads(pids.read_text()).items():
        try:
            os.killpg(int(info["pid"]), signal.SIGTERM)
            stopped.append(f"{name} (pid {info['pid']})")
        except (ProcessLookupError, PermissionError):
            pass
    pids.unlink()
    return stopped


def _spawn(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    base_url: str,
    ready_path: str,
    timeout: float = 90,
) -> Background:
    log = state_dir() / f"{name}.log"
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
    ready_url = base_url + ready_path
    _remember(handle)
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


def serve_locally(model_ref: str, tracking_uri: str, port: int) -> Background:
    """`python -m server` in the background, recomputing drift every 2 s for the demo."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLOPS_DRIFT_INTERVAL": "2",
        "MLOPS_DRIFT_WINDOW": "300",
        "PYTHONPATH": str(REPO_ROOT),
    }
    cmd = [
        sys.executable,
        "-m",
        "server",
        "--model-uri",
        model_ref,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return _spawn("server", cmd, env, f"http://127.0.0.1:{port}", "/ready")


def start_prometheus(target: ScrapeTarget, port: int) -> Background | None:
    """A Prometheus scraping ``target`` with the shipped rules (short `for:`), if installed."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    root = state_dir() / "prometheus"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rules = (REPO_ROOT / "deploy" / "prometheus" / "rules.yml").read_text()
    (root / "rules.yml").write_text(re.sub(r"(?m)^(\s+for:\s*)\S+", rf"\g<1>{DEMO_FOR}", rules))
    (root / "targets.json").write_text(render_groups(target_groups([target])))
    (root / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n"
        "rule_files:\n  - rules.yml\n"
        "scrape_configs:\n  - job_name: mlops\n    file_sd_configs:\n"
        "      - files: ['targets.json']\n"
    )
    cmd = [
        binary,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return _spawn("prometheus", cmd, dict(os.environ), f"http://127.0.0.1:{port}", "/-/ready")


def send_traffic(url: str, clean: int = 150, drifted: int = 300) -> tuple[int, int]:
    """Clean iris rows, then a slice whose petal length moved: (answered, failed)."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    rows: list[list[Any]] = (
        frame[FEATURES].sample(clean, replace=True, random_state=0).values.tolist()
    )
    shifted = frame[FEATURES].sample(drifted, replace=True, random_state=1)
    rows += shifted.assign(petal_length=shifted.petal_length + 3.0).values.tolist()
    ok = failed = 0
    try:
        with httpx.Client(timeout=10) as http:
            for row in rows:
                r = http.post(f"{url}/predict", json={"data": [row]})
                ok, failed = (ok + 1, failed) if r.status_code == 200 else (ok, failed + 1)
    except httpx.HTTPError as exc:
        raise Unavailable(f"the model server at {url} stopped answering: {exc}") from exc
    return ok, failed


def wait_until_scraped(prometheus_url: str, timeout: float = 30) -> bool:
    """Wait for Prometheus' first scrape of the server, so the demo's traffic shows as rates."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = httpx.get(
                f"{prometheus_url}/api/v1/query", params={"query": "up"}, timeout=2
            ).json()["data"]["result"]
            if any(r["value"][1] == "1" for r in result):
                return True
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    return False


def start_trickle(url: str, per_second: float = 4.0) -> Background:
    """Keep a little drifted traffic flowing in the background, so the panes stay alive."""
    code = (
        "import sys, time, httpx\n"
        "url, pause = sys.argv[1], 1.0 / float(sys.argv[2])\n"
        "rows = [[5.9, 3.0, 8.1, 1.8], [5.1, 3.5, 4.4, 0.2], [6.7, 3.1, 7.4, 1.4]]\n"
        "with httpx.Client(timeout=10) as http:\n"
        "    i = 0\n"
        "    while True:\n"
        "        try:\n"
        "            http.post(url + '/predict', json={'data': [rows[i % 3]]})\n"
        "        except httpx.HTTPError:\n"
        "            time.sleep(1)\n"
        "        i += 1\n"
        "        time.sleep(pause)\n"
    )
    log = state_dir() / "traffic.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, url, str(per_second)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
    handle = Background("traffic", proc.pid, url, log)
    _remember(handle)
    return handle
