"""Real services for the integration tests: an `mlflow server`, the Docker engine, Prometheus.

Each is started (or reached) once per test session. When one is missing the test is skipped
with the reason, except under ``MLOPS_REQUIRE_SERVICES=1`` (CI), where it fails instead: a
green CI must mean the real thing ran.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

REQUIRE_SERVICES = os.environ.get("MLOPS_REQUIRE_SERVICES") == "1"
BASE_IMAGE = os.environ.get("MLOPS_BASE_IMAGE", "mlops-base:bookworm")
VENV_BIN = str(Path(sys.executable).parent)


def service_missing(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where every service must be present."""
    if REQUIRE_SERVICES:
        pytest.fail(
            f"{reason} [MLOPS_REQUIRE_SERVICES=1, so this fails instead of skipping]", pytrace=False
        )
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_with_venv_on_path(**extra: str) -> dict[str, str]:
    """The environment for child processes: this interpreter's venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop a process we started in its own session, and everything it spawned."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def _wait_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _stop(proc)
            service_missing(f"{what} exited with {proc.returncode} on start:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last_error = str(exc)
        time.sleep(0.25)
    _stop(proc)
    service_missing(f"{what} not ready at {url} after {timeout:.0f}s ({last_error}):\n{_tail(log)}")


# --------------------------------------------------------------------------- MLflow


@dataclass
class MlflowServer:
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path


def start_mlflow_server(root: Path, timeout: float = 120) -> MlflowServer:
    """A real `mlflow server` on a free loopback port: sqlite store, artifacts proxied to root."""
    port = free_port()
    log = root / "mlflow-server.log"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "2",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env_with_venv_on_path(),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/health", proc, log, timeout, "mlflow server")
    return MlflowServer(url=url, root=root, process=proc, log=log)


# --------------------------------------------------------------------------- Docker


def docker_client_or_skip() -> Any:
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "no daemon"
        service_missing(
            f"Docker engine not reachable ({exc.__class__.__name__}: {exc}); start dockerd"
        )
    return client


# --------------------------------------------------------------------------- Prometheus


@dataclass
class PrometheusServer:
    url: str
    root: Path
    config_path: Path
    targets_path: Path
    process: subprocess.Popen[bytes]
    log: Path
    rule_files: list[Path] = field(default_factory=list)

    def set_targets(self, groups: list[dict[str, Any]]) -> None:
        """Replace the file_sd target groups (written atomically; Prometheus re-reads it)."""
        tmp = self.targets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_path)


def prometheus_config(targets_path: Path, rule_files: list[Path], interval: str = "1s") -> str:
    """A Prometheus config that scrapes itself and every target in the file_sd file."""
    rules = "".join(f"  - {p}\n" for p in rule_files)
    return (
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        + (f"rule_files:\n{rules}" if rule_files else "")
        + "scrape_configs:\n"
        "  - job_name: prometheus\n"
        "    static_configs:\n"
        "      - targets: ['{self}']\n"
        "  - job_name: mlops\n"
        "    file_sd_configs:\n"
        f"      - files: ['{targets_path}']\n"
        "        refresh_interval: 1s\n"
    )


def start_prometheus(
    root: Path, rule_files: list[Path] | None = None, timeout: float = 60
) -> PrometheusServer:
    binary = shutil.which("prometheus")
    if binary is None:
        service_missing("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    targets = root / "targets.json"
    targets.write_text("[]")
    config = root / "prometheus.yml"
    config.write_text(
        prometheus_config(targets, rule_files or []).replace("{self}", f"127.0.0.1:{port}")
    )
    log = root / "prometheus.log"
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/-/ready", proc, log, timeout, "prometheus")
    return PrometheusServer(
        url=url,
        root=root,
        config_path=config,
        targets_path=targets,
        process=proc,
        log=log,
        rule_files=list(rule_files or []),
    )


def stop(server: MlflowServer | PrometheusServer) -> None:
    _stop(server.process)


def session_fixture_iter(server: MlflowServer | PrometheusServer) -> Iterator[Any]:
    try:
        yield server
    finally:
        stop(server)


# --------------------------------------------------------------------------- our model server


def start_model_server(
    model_ref: str, log: Path, timeout: float = 90, **env: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """`python -m server` as a real process on a free port; returns (base URL, process)."""
    port = free_port()
    root = Path(__file__).resolve().parents[1]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "--model-uri",
                model_ref,
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
            env=env_with_venv_on_path(**env),
        )
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/ready", proc, log, timeout, "python -m server")
    return url, proc
