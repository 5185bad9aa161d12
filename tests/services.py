"""Real services for the integration tests: an `mlflow server`, the Docker engine, Prometheus.

Each is started once per test run and shared by every pytest-xdist worker: the first worker that
asks starts it (under a file lock) and writes where it is into the run's shared directory; the
others read that; the controller stops them all when the run ends (``stop_shared``). When one is
missing the test is skipped with the reason, except under ``MLOPS_REQUIRE_SERVICES=1`` (CI),
where it fails instead: a green CI must mean the real thing ran.

Every service's log is remembered (``remember_log``), so that a failing test prints the tail of
each log it may have touched, and of the containers it started (``failure_logs``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from backends import ports

REQUIRE_SERVICES = os.environ.get("MLOPS_REQUIRE_SERVICES") == "1"
BASE_IMAGE = os.environ.get("MLOPS_BASE_IMAGE", "mlops-base:bookworm")
VENV_BIN = str(Path(sys.executable).parent)
SHARED_ENV = "MLOPS_TEST_SHARED"  # the run's shared directory (set by the controller)
LOG_TAIL = 40

# The steady load of the switch, canary and swarm tests: each client pauses this long between
# an answer and its next request, so three or four of them keep ~60-80 requests a second going
# through every switch and step, as a service's steady traffic does. At 0.02 s (~150-200 a
# second) the router and the model servers answering them were a third of the CPU of a canary
# test (the healthy and faulty canaries: 128 CPU-s at 0.02 s, 79 at 0.1 s, on 2 cores), taken from
# the run's other tests; unpaced, four clients took 1.6 of the 2 cores. MLOPS_TEST_LOAD_PACE
# changes it for a run (0 for the hardest load a test of ours sends).
LOAD_PACE = float(os.environ.get("MLOPS_TEST_LOAD_PACE", "0.05"))


def service_missing(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where every service must be present."""
    if REQUIRE_SERVICES:
        pytest.fail(
            f"{reason} [MLOPS_REQUIRE_SERVICES=1, so this fails instead of skipping]", pytrace=False
        )
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port outside the ephemeral range, in this worker's slice (conftest)."""
    return ports.free_port()


def env_with_venv_on_path(**extra: str) -> dict[str, str]:
    """The environment for child processes: this interpreter's venv first on PATH."""
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


# --------------------------------------------------------------------------- logs on failure

_LOGS: dict[Path, str] = {}  # what this process started or attached to: log file → name
_STATE_DIRS: dict[Path, str] = {}  # directories whose recent logs and state files are printed
_DOCKER_USED = False


def remember_log(name: str, path: Path) -> None:
    """Print the tail of ``path`` when a test fails (every service and server registers here)."""
    _LOGS.setdefault(path, name)


def remember_state_dir(name: str, path: Path) -> None:
    """Print each ``*.log`` and ``*.json`` under ``path`` written since a failing test started
    (a state directory's workers: e.g. a canary release's file and its worker's log)."""
    _STATE_DIRS.setdefault(path, name)


def _tail(path: Path, lines: int = LOG_TAIL) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def failure_logs(since: datetime) -> list[tuple[str, str]]:
    """(title, text) of each service log, and of every container of ours created since
    ``since`` (a test's start): what a failing test leaves to understand it."""
    sections = [(f"log of {name} ({path})", _tail(path)) for path, name in _LOGS.items()]
    for path, name in _STATE_DIRS.items():
        sections += [(f"{name}: {found}", _tail(found)) for found in _written_since(path, since)]
    if _DOCKER_USED:
        sections += _container_logs(since)
    return sections


def _written_since(directory: Path, since: datetime) -> list[Path]:
    after = since.timestamp()
    found = []
    for pattern in ("*.log", "*.json"):
        for path in sorted(directory.rglob(pattern)):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime >= after:
                    found.append(path)
    return found


def _container_logs(since: datetime) -> list[tuple[str, str]]:
    try:
        import docker

        client = docker.from_env(timeout=10)
        try:
            found = client.containers.list(all=True, filters={"label": "org.mlops-console.role"})
            out = []
            for c in found:
                created = datetime.fromisoformat(c.attrs["Created"][:26].rstrip("Z") + "+00:00")
                if created < since:
                    continue
                logs = c.logs(tail=LOG_TAIL).decode(errors="replace")
                out.append((f"container {c.name} ({c.status})", logs))
            return out
        finally:
            client.close()
    except Exception as exc:  # the logs help; their absence must not hide the failure
        return [("container logs", f"could not read them: {exc!r}")]


# --------------------------------------------------------------------------- shared services


def shared_root() -> Path:
    """The directory every worker of this run shares (the controller set it before forking)."""
    root = os.environ.get(SHARED_ENV)
    if not root:
        root = tempfile.mkdtemp(prefix="mlops-tests-shared-")
        os.chmod(root, 0o755)
        os.environ[SHARED_ENV] = root
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    with (shared_root() / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def shared(name: str, start: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """The service ``name`` of this run: started by the first worker that asks (``start`` gets
    a fresh directory and returns what others need, ``pid`` and ``log`` included)."""
    state = shared_root() / f"{name}.json"
    with _locked(name):
        if not state.is_file():
            root = shared_root() / name
            root.mkdir(exist_ok=True)
            try:
                info = start(root)
            except BaseException as exc:  # skipped or failed: the other workers hear why
                state.write_text(json.dumps({"error": str(exc) or exc.__class__.__name__}))
                raise
            state.write_text(json.dumps(info))
        info = json.loads(state.read_text())
    if "error" in info:
        service_missing(f"{name} did not start: {info['error']}")
    remember_log(name, Path(info["log"]))
    return info


def stop_shared() -> None:
    """Stop every shared service of this run (the controller, once every worker is done)."""
    root = os.environ.get(SHARED_ENV)
    if not root:
        return
    for state in Path(root).glob("*.json"):
        with contextlib.suppress(ValueError, OSError, KeyError):
            info = json.loads(state.read_text())
            _stop_group(int(info["pid"]), first=int(info.get("signal", signal.SIGTERM)))


def _stop_group(pid: int, timeout: float = 15, first: int = signal.SIGTERM) -> None:
    """Signal the process group ``pid`` leads (``first``), then SIGKILL what is left after
    ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, first)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)


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
    """Until ``url`` answers 200. ``timeout`` only stops a hung start; on a slow machine a
    service is waited for as long as it keeps starting (its process is alive)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _stop(proc)
            service_missing(f"{what} exited with {proc.returncode} on start:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last_error = str(exc)
        time.sleep(0.25)
    _stop(proc)
    service_missing(f"{what} not ready at {url} after {timeout:.0f}s ({last_error}):\n{_tail(log)}")


def _spawn(cmd: list[str], log: Path, cwd: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env_with_venv_on_path(**env),
            start_new_session=True,  # outlives the worker that started it; stopped as a group
        )


# --------------------------------------------------------------------------- MLflow


@dataclass
class MlflowServer:
    url: str
    root: Path
    log: Path
    pid: int
    process: subprocess.Popen[bytes] | None = None  # only in the process that started it


def start_mlflow_server(
    root: Path, timeout: float = 300, backend: str | None = None, **env: str
) -> MlflowServer:
    """A real `mlflow server` on a free loopback port: a sqlite store (or ``backend``),
    artifacts proxied to root; ``env`` for its process (its webhook settings, say)."""
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
        backend or f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--workers",
        "2",
    ]
    # MLflow 3's job runner (GenAI jobs, which no test uses) keeps seven huey consumer
    # processes per server polling: together ~9 % of a core per server, taken from the tests.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **env}
    proc = _spawn(cmd, log, root, **env)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/health", proc, log, timeout, "mlflow server")
    remember_log("mlflow server", log)
    return MlflowServer(url=url, root=root, log=log, pid=proc.pid, process=proc)


def shared_mlflow_server() -> MlflowServer:
    """The run's one tracking server (started by the first worker that needs it)."""

    def start(root: Path) -> dict[str, Any]:
        server = start_mlflow_server(root)
        return {"url": server.url, "root": str(root), "log": str(server.log), "pid": server.pid}

    info = shared("mlflow-server", start)
    return MlflowServer(info["url"], Path(info["root"]), Path(info["log"]), int(info["pid"]))


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if found:
        return found[-1].parent
    which = shutil.which("postgres")
    return Path(which).parent if which else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then (CI is root)."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def start_postgres(root: Path, timeout: float = 120) -> dict[str, Any]:
    """A PostgreSQL cluster of the run's own (Debian's `postgresql`), one database for MLflow."""
    binaries = _postgres_bin()
    if binaries is None:
        service_missing("PostgreSQL is not installed (apt-get install postgresql)")
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
    log = root / "postgres.log"
    init = subprocess.run(
        _as_postgres_user(
            [str(binaries / "initdb"), "-D", str(data), "-U", "mlops", "--auth=trust", "-E", "UTF8"]
        ),
        capture_output=True,
        text=True,
    )
    if init.returncode != 0:
        service_missing(f"initdb failed: {init.stderr[-500:]}")
    port = free_port()
    cmd = [str(binaries / "postgres"), "-D", str(data), "-p", str(port)]
    cmd += ["-k", str(sockets), "-h", "127.0.0.1", "-c", "max_connections=200"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _as_postgres_user(cmd), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            service_missing(f"postgres exited on start:\n{_tail(log)}")
        ready = subprocess.run(
            [str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
            capture_output=True,
        )
        if ready.returncode == 0:
            break
        time.sleep(0.3)
    else:
        service_missing(f"postgres not ready after {timeout:.0f}s:\n{_tail(log)}")
    created = subprocess.run(
        [str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlops", "mlflow"],
        capture_output=True,
        text=True,
    )
    if created.returncode != 0:
        service_missing(f"createdb failed: {created.stderr[-500:]}")
    remember_log("postgres", log)
    url = f"postgresql+psycopg2://mlops@127.0.0.1:{port}/mlflow"
    # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for every client to leave).
    return {"url": url, "pid": proc.pid, "log": str(log), "signal": int(signal.SIGINT)}


def shared_mlflow_server_on_postgres() -> MlflowServer:
    """The run's one `mlflow server` backed by PostgreSQL (a team's kind of tracking server:
    tag values limited to 5,000 characters, real concurrent transactions)."""
    database = shared("postgres", start_postgres)

    def start(root: Path) -> dict[str, Any]:
        server = start_mlflow_server(root, backend=database["url"])
        return {"url": server.url, "root": str(root), "log": str(server.log), "pid": server.pid}

    info = shared("mlflow-server-postgres", start)
    return MlflowServer(info["url"], Path(info["root"]), Path(info["log"]), int(info["pid"]))


# --------------------------------------------------------------------------- Docker


def docker_client_or_skip() -> Any:
    global _DOCKER_USED
    try:
        import docker

        # Generous: an engine busy with parallel builds can take minutes to answer one call,
        # and a timeout here fails a test for the machine's load, not for our code.
        client = docker.from_env(timeout=300)
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "no daemon"
        service_missing(
            f"Docker engine not reachable ({exc.__class__.__name__}: {exc}); start dockerd"
        )
    _DOCKER_USED = True
    return client


# --------------------------------------------------------------------------- Prometheus


@dataclass
class PrometheusServer:
    url: str
    root: Path
    config_path: Path
    targets_dir: Path
    log: Path
    pid: int
    rule_files: list[Path] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    owner: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def targets_path(self) -> Path:
        """This user's own file_sd file: others sharing the server write theirs beside it."""
        return self.targets_dir / f"{self.owner}.json"

    def set_targets(self, groups: list[dict[str, Any]]) -> None:
        """Replace this user's file_sd target groups (atomically; Prometheus re-reads them)."""
        tmp = self.targets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_path)

    def for_another_user(self) -> PrometheusServer:
        """The same server, with a target file of its own."""
        return PrometheusServer(
            self.url,
            self.root,
            self.config_path,
            self.targets_dir,
            self.log,
            self.pid,
            list(self.rule_files),
        )


def prometheus_config(
    targets_dir: Path, rule_files: list[Path], interval: str = "1s", alertmanager: str = ""
) -> str:
    """A Prometheus config that scrapes itself and every target in the file_sd directory, and
    sends its alerts to ``alertmanager`` (host:port) when given."""
    rules = "".join(f"  - {p}\n" for p in rule_files)
    alerting = (
        "alerting:\n  alertmanagers:\n    - static_configs:\n"
        f"        - targets: ['{alertmanager}']\n"
        if alertmanager
        else ""
    )
    return (
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        + (f"rule_files:\n{rules}" if rule_files else "")
        + alerting
        + "scrape_configs:\n"
        "  - job_name: prometheus\n"
        "    static_configs:\n"
        "      - targets: ['{self}']\n"
        "  - job_name: mlops\n"
        "    file_sd_configs:\n"
        f"      - files: ['{targets_dir}/*.json']\n"
        "        refresh_interval: 1s\n"
    )


def start_prometheus(
    root: Path, rule_files: list[Path] | None = None, timeout: float = 120, alertmanager: str = ""
) -> PrometheusServer:
    binary = shutil.which("prometheus")
    if binary is None:
        service_missing("prometheus is not installed (apt-get install prometheus)")
    port = free_port()
    targets = root / "targets"
    targets.mkdir(exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text(
        prometheus_config(targets, rule_files or [], alertmanager=alertmanager).replace(
            "{self}", f"127.0.0.1:{port}"
        )
    )
    log = root / "prometheus.log"
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    proc = _spawn(cmd, log, root)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/-/ready", proc, log, timeout, "prometheus")
    remember_log("prometheus", log)
    return PrometheusServer(
        url, root, config, targets, log, proc.pid, list(rule_files or []), process=proc
    )


@dataclass
class ImageRegistry:
    address: str  # host:port, as Docker names a registry
    log: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start_image_registry(
    root: Path, *, read_only: bool = False, listen: str = "127.0.0.1"
) -> ImageRegistry:
    """Debian's `docker-registry` (the Distribution registry) on a free loopback port, its
    storage under ``root``; ``read_only``: it refuses every push (maintenance mode). The
    engine talks plain HTTP to a registry on 127.0.0.0/8 without being told. ``listen``
    ``0.0.0.0``: reachable from a second node's network too (still named by loopback here)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        service_missing("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port()
    config = root / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        + ("  maintenance:\n    readonly:\n      enabled: true\n" if read_only else "")
        + f"http:\n  addr: {listen}:{port}\n  secret: tests-only\n"
    )
    log = root / "registry.log"
    proc = _spawn([binary, "serve", str(config)], log, root)
    _wait_http(f"http://127.0.0.1:{port}/v2/", proc, log, 60, "docker-registry")
    remember_log(f"docker-registry :{port}", log)
    return ImageRegistry(f"127.0.0.1:{port}", log, proc)


RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "rules.yml"


def fast_rules(into: Path) -> Path:
    """The shipped rules.yml, unchanged but for every `for:` cut to 2 s."""
    import yaml

    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    path = into / "rules-fast.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def shared_prometheus() -> PrometheusServer:
    """The run's one Prometheus: scrapes itself and the file_sd directory every second, with
    the shipped rules (their `for:` cut to 2 s), sending its alerts to the run's Alertmanager.
    Each user gets a target file of its own."""
    try:
        address = shared_alertmanager().url.split("://", 1)[1]
    except pytest.skip.Exception:  # no Alertmanager here (in CI this failed instead)
        address = ""

    def start(root: Path) -> dict[str, Any]:
        server = start_prometheus(root, [fast_rules(root)], alertmanager=address)
        return {
            "url": server.url,
            "root": str(root),
            "config": str(server.config_path),
            "targets": str(server.targets_dir),
            "log": str(server.log),
            "pid": server.pid,
            "rules": [str(r) for r in server.rule_files],
        }

    info = shared("prometheus", start)
    return PrometheusServer(
        info["url"],
        Path(info["root"]),
        Path(info["config"]),
        Path(info["targets"]),
        Path(info["log"]),
        int(info["pid"]),
        [Path(r) for r in info["rules"]],
    )


# --------------------------------------------------------------------------- Alertmanager

AM_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "alertmanager" / "alertmanager.yml"


@dataclass
class AlertmanagerServer:
    url: str
    root: Path
    config_path: Path
    log: Path
    pid: int
    process: subprocess.Popen[bytes] | None = None

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts as Prometheus does (POST /api/v2/alerts)."""
        r = httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10)
        assert r.status_code == 200, r.text


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        service_missing("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
    return found


def fast_alertmanager_config(webhook_url: str = "", token_file: Path | None = None) -> str:
    """The shipped alertmanager.yml with its waits cut to a second for tests, and its
    retraining webhook pointed at ``webhook_url`` (with ``token_file``) when given."""
    from backends.prometheus.alertmanager_config import quick_config

    return quick_config(AM_CONFIG.read_text(), webhook_url=webhook_url, token_file=token_file)


def start_alertmanager(root: Path, config: str, timeout: float = 120) -> AlertmanagerServer:
    binary = alertmanager_binary()
    port = free_port()
    path = root / "alertmanager.yml"
    path.write_text(config)
    log = root / "alertmanager.log"
    cmd = [
        binary,
        f"--config.file={path}",
        f"--storage.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: several may run on one machine
    ]
    proc = _spawn(cmd, log, root)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/-/ready", proc, log, timeout, "alertmanager")
    remember_log("alertmanager", log)
    return AlertmanagerServer(url, root, path, log, proc.pid, process=proc)


def shared_alertmanager() -> AlertmanagerServer:
    """The run's one Alertmanager: the shipped routes, waits cut to a second, no webhook."""

    def start(root: Path) -> dict[str, Any]:
        server = start_alertmanager(root, fast_alertmanager_config())
        return {
            "url": server.url,
            "root": str(root),
            "config": str(server.config_path),
            "log": str(server.log),
            "pid": server.pid,
        }

    info = shared("alertmanager", start)
    return AlertmanagerServer(
        info["url"], Path(info["root"]), Path(info["config"]), Path(info["log"]), int(info["pid"])
    )


def stop(server: MlflowServer | PrometheusServer | AlertmanagerServer) -> None:
    """Stop a server this process started itself (not a shared one)."""
    if server.process is not None:
        _stop(server.process)
    else:
        _stop_group(server.pid)


# --------------------------------------------------------------------------- our model server


def start_model_server(
    model_ref: str, log: Path, timeout: float = 300, **env: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """`python -m server` as a real process on a free port; returns (base URL, process)."""
    port = free_port()
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "server", "--model-uri", model_ref, "--port", str(port)]
    proc = _spawn([*cmd, "--log-level", "warning"], log, root, **env)
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/ready", proc, log, timeout, "python -m server")
    remember_log(f"model server {model_ref} on :{port}", log)
    return url, proc


# --------------------------------------------------------------------------- faults


class CountingDeadEnd:
    """A loopback port that accepts every connection and resets it at once, counting them.

    "Fails fast" claims are checked against it by counting attempts (a client that retries or
    backs off shows up as more connections), never by a clock.
    """

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            # SO_LINGER 0: close with a reset, as a dead or refusing server looks to a client.
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> CountingDeadEnd:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def now() -> datetime:
    return datetime.now(UTC)
