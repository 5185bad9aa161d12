"""Training: run an MLflow Project (``mlflow run --env-manager local``) as a subprocess.

The subprocess is MLflow's own project runner, so MLflow creates the run, logs the entry
point's parameters and marks the run FINISHED or FAILED itself. We add what an operator needs
around it:

* the output is streamed line by line and kept in a log file, ``$MLOPS_STATE_DIR`` (else
  ``$XDG_STATE_HOME/mlops-console``, else ``~/.local/state/mlops-console``) ``/logs/<run id>.log``
  (named ``pending-...`` until MLflow prints the run id), and uploaded to the run as the
  artifact ``mlops/train.log`` when training ends, so `mlops runs logs` works from any machine;
* a run never stays RUNNING after its process is gone: if the runner was killed before it could
  mark the run, ``finish`` marks it FAILED;
* relative local store URIs (``sqlite:///mlflow.db``) are made absolute, because the runner
  starts the entry point inside the project directory, where a relative path means another file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from backends.errors import BackendError, InvalidInput, NotFound
from backends.records import ModelVersion, ProjectParameter

__all__ = [
    "LOG_ARTIFACT",
    "LOG_TRAILER",
    "Training",
    "absolute_tracking_uri",
    "log_path_for",
    "log_writer_alive",
    "logs_dir",
    "parse_params",
    "project_name",
    "project_parameters",
    "read_log",
    "register_model",
    "state_dir",
]

RUN_ID_LINE = re.compile(r"in run with ID '([0-9a-f]{32})'")
LOG_ARTIFACT = "mlops/train.log"
POLICY_FILE = "gate.yaml"  # a project's gate policy, copied to each of its runs
LOG_TRAILER = "=== mlops: training exited with status"
TERMINAL = ("FINISHED", "FAILED", "KILLED")


def state_dir() -> Path:
    """``$MLOPS_STATE_DIR``, else ``$XDG_STATE_HOME/mlops-console``, else ~/.local/state/..."""
    if explicit := os.environ.get("MLOPS_STATE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mlops-console"


def logs_dir() -> Path:
    """Where training logs are kept on this machine."""
    return state_dir() / "logs"


def log_path_for(run_id: str) -> Path:
    """The local log file of a run started by `mlops train` here."""
    return logs_dir() / f"{run_id}.log"


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///rel.db`` → ``sqlite:////abs/rel.db`` (and bare or ``file:`` paths likewise)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite" and uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        return uri if path.startswith("/") else "sqlite:///" + str(Path(path).resolve())
    if parsed.scheme == "file":
        return "file://" + str(Path(parsed.path).resolve())
    if parsed.scheme == "" and uri:
        return str(Path(uri).resolve())
    return uri


def project_name(project_dir: Path) -> str:
    """The ``name:`` of an MLproject file (the default experiment), else the directory name."""
    try:
        text = (project_dir / "MLproject").read_text()
    except OSError:
        return project_dir.resolve().name
    match = re.search(r"^name:\s*['\"]?([^'\"\n#]+?)['\"]?\s*(?:#.*)?$", text, re.MULTILINE)
    return match.group(1).strip() if match else project_dir.resolve().name


def project_parameters(project_dir: Path, entry_point: str = "main") -> list[ProjectParameter]:
    """The parameters ``entry_point`` of an MLflow Project takes, in MLproject order."""
    import yaml  # a dependency of mlflow's; imported here because only the train form needs it

    path = project_dir / "MLproject"
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidInput(f"{project_dir} is not an MLflow Project (no MLproject file)") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from exc
    points = (spec or {}).get("entry_points") or {}
    if entry_point not in points:
        raise InvalidInput(f"{path} has no entry point {entry_point!r}")
    found = []
    for name, raw in ((points[entry_point] or {}).get("parameters") or {}).items():
        # MLflow accepts `name: type` and `name: {type: ..., default: ...}`.
        spec_ = raw if isinstance(raw, dict) else {"type": str(raw)}
        default = spec_.get("default")
        found.append(
            ProjectParameter(
                str(name),
                str(spec_.get("type", "string")),
                None if default is None else str(default),
            )
        )
    return found


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` → dict; InvalidInput names the malformed one."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"-P takes key=value, not {pair!r}")
        params[key.strip()] = value
    return params


def _venv_env(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    # The project runs `python ...` from PATH: make it this interpreter (the console's venv),
    # even when `mlops` was started by its full path without activating the venv.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Training:
    """One `mlflow run` subprocess: start it, iterate its output, then ``finish``."""

    def __init__(
        self,
        project_dir: Path,
        tracking_uri: str,
        *,
        params: dict[str, str] | None = None,
        experiment: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        if not (project_dir / "MLproject").is_file():
            raise InvalidInput(f"{project_dir} is not an MLflow Project (no MLproject file)")
        self.policy = project_dir / POLICY_FILE
        if self.policy.is_file():
            from backends.policy import load_policy

            load_policy(self.policy)  # a policy that does not read is refused before training
        self.project_dir = project_dir
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self.params = dict(params or {})
        # MLflow's runner refuses a name and an id together; an id from the environment wins
        # when no name was asked for.
        by_id = experiment is None and bool(os.environ.get("MLFLOW_EXPERIMENT_ID"))
        self.experiment: str | None = (
            None
            if by_id
            else experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or project_name(project_dir)
        )
        logs_dir().mkdir(parents=True, exist_ok=True)
        self.log_path = log_path or logs_dir() / f"pending-{int(time.time())}-{os.getpid()}.log"
        self.run_id: str | None = None
        self.status: str | None = None
        self.started = time.monotonic()
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def command(self) -> list[str]:
        """The `mlflow run` command line (parameters passed unquoted: MLflow quotes them)."""
        cmd = [sys.executable, "-m", "mlflow", "run", str(self.project_dir)]
        cmd += ["--env-manager", "local"]
        if self.experiment is not None:
            cmd += ["--experiment-name", self.experiment]
        for key, value in self.params.items():
            cmd += ["-P", f"{key}={value}"]
        return cmd

    def start(self) -> None:
        """Launch the runner; its stdout and stderr arrive merged through ``lines``."""
        self._log = self.log_path.open("a", encoding="utf-8")
        # The pid lets `runs logs --follow` notice a writer that died without its last line.
        self._log.write(f"=== mlops: pid {os.getpid()}: {' '.join(self.command())}\n")
        self._log.flush()
        self._proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=_venv_env(self.tracking_uri),
            errors="replace",
        )

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else 0

    def lines(self) -> Iterator[str]:
        """Output lines as they come (newline stripped), also written to the log file."""
        assert self._proc is not None and self._proc.stdout is not None and self._log is not None
        for line in self._proc.stdout:
            self._log.write(line)
            self._log.flush()
            if self.run_id is None and (match := RUN_ID_LINE.search(line)):
                self.run_id = match.group(1)
                self._adopt_log_name()
            yield line.rstrip("\n")

    def _adopt_log_name(self) -> None:
        assert self.run_id is not None
        final = log_path_for(self.run_id)
        if self.log_path != final:
            self.log_path.replace(final)  # the open handle keeps writing to the renamed file
            self.log_path = final

    def interrupt(self) -> None:
        """Forward Ctrl-C: MLflow's runner then cancels the entry point and marks the run."""
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float | None = None) -> int:
        """The runner's exit status (128 + signal when it was killed)."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        return 128 - code if code < 0 else code

    def finish(self, exit_code: int, *, upload: bool = True) -> str | None:
        """Make sure the run is not left RUNNING, upload the log; return the run's status."""
        assert self._log is not None
        if self.run_id is not None:
            try:
                self.status = _ensure_terminated(self.tracking_uri, self.run_id)
            except BackendError as exc:
                self._log.write(f"=== mlops: could not check the run's status: {exc}\n")
        seconds = time.monotonic() - self.started
        self._log.write(
            f"{LOG_TRAILER} {exit_code} (run {self.run_id or 'not created'}: "
            f"{self.status or 'unknown'}) after {seconds:.1f} s ===\n"
        )
        self._log.close()
        problem: BackendError | None = None
        if upload and self.run_id is not None:
            if self.policy.is_file():
                # The policy travels with the model: the gate reads it from the run. A run
                # that lost it would be judged without it, so its loss is an error.
                try:
                    _upload_policy(self.tracking_uri, self.run_id, self.policy)
                except BackendError as exc:
                    problem = exc
            # The local copy stays whatever happens; the artifact is a convenience.
            with contextlib.suppress(BackendError):
                _upload_log(self.tracking_uri, self.run_id, self.log_path)
        if problem is not None:
            raise problem
        return self.status


def _ensure_terminated(tracking_uri: str, run_id: str) -> str:
    from backends.mlflow.client import connect, translate_errors

    client = connect(tracking_uri)
    with translate_errors(tracking_uri):
        status = str(client.get_run(run_id).info.status)
        if status not in TERMINAL:
            client.set_terminated(run_id, "FAILED")
            status = "FAILED"
    return status


def _upload_policy(tracking_uri: str, run_id: str, policy: Path) -> None:
    from backends.mlflow.client import connect, translate_errors

    with translate_errors(tracking_uri):
        connect(tracking_uri).log_artifact(run_id, str(policy))


def _upload_log(tracking_uri: str, run_id: str, log_path: Path) -> None:
    from backends.mlflow.client import connect, translate_errors

    client = connect(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / Path(LOG_ARTIFACT).name
        shutil.copyfile(log_path, copy)
        with translate_errors(tracking_uri):
            client.log_artifact(run_id, str(copy), artifact_path=str(Path(LOG_ARTIFACT).parent))


def log_writer_alive(path: Path) -> bool | None:
    """Whether the process writing a local training log still runs (None: cannot tell)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
    except OSError:
        return None
    match = re.match(r"=== mlops: pid (\d+):", first)
    if match is None:
        return None
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def read_log(tracking_uri: str, run_id: str) -> tuple[str, str]:
    """A training log: the local file if this machine ran it, else the run's artifact.

    Returns (text, where it came from); NotFound when the run has neither.
    """
    local = log_path_for(run_id)
    if local.is_file():
        return local.read_text(errors="replace"), str(local)
    from backends.mlflow.client import connect, translate_errors

    client = connect(absolute_tracking_uri(tracking_uri))
    with translate_errors(tracking_uri):
        client.get_run(run_id)  # NotFound names the run when it does not exist
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with translate_errors(tracking_uri):
                path = client.download_artifacts(run_id, LOG_ARTIFACT, tmp)
        except BackendError as exc:
            raise NotFound(
                f"run {run_id} has no training log (only runs started by `mlops train` keep one)"
            ) from exc
        return Path(path).read_text(errors="replace"), f"artifact {LOG_ARTIFACT}"


def register_model(tracking_uri: str, run_id: str, name: str) -> ModelVersion:
    """Register the model the run logged as a new version of ``name`` (the registry's rules)."""
    from backends.mlflow.registry import Registry

    registry: Any = Registry(absolute_tracking_uri(tracking_uri))
    version: ModelVersion = registry.register(run_id, name)
    return version
