"""Training: run an MLflow Project's entry point as ``mlflow run --env-manager local`` does.

We create the run (with the tags and parameters MLflow's runner logs), start the entry point's
command in the project directory with ``MLFLOW_RUN_ID`` set, so its ``mlflow.start_run()``
writes into that run, and mark the run FINISHED, FAILED or KILLED when it ends. MLflow's runner
did the same from a process of its own whose import of MLflow alone took as long as fitting the
example (``project_spec`` and ``project_runs`` hold what it did; against a tracking server this
process never imports MLflow). Around it, what an operator needs:

* the output is streamed line by line and kept in a log file, ``$MLOPS_STATE_DIR`` (else
  ``$XDG_STATE_HOME/mlops-console``, else ``~/.local/state/mlops-console``) ``/logs/<run id>.log``,
  and uploaded to the run as the artifact ``mlops/train.log`` when training ends, so `mlops runs
  logs` works from any machine;
* a run never stays RUNNING after its process is gone: ``finish`` marks it by the exit status;
* relative local store URIs (``sqlite:///mlflow.db``) are made absolute, because the entry point
  runs inside the project directory, where a relative path means another file.
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
from backends.mlflow.project_runs import ProjectRuns, project_runs_for, run_tags
from backends.mlflow.project_spec import load_entry_point
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

LOG_ARTIFACT = "mlops/train.log"
POLICY_FILE = "gate.yaml"  # a project's gate policy, copied to each of its runs
LOG_TRAILER = "=== mlops: training exited with status"


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
    point = load_entry_point(project_dir, entry_point)
    return [ProjectParameter(p.name, p.type, p.default) for p in point.parameters]


def parse_params(pairs: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` → dict; InvalidInput names the malformed one."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"-P takes key=value, not {pair!r}")
        params[key.strip()] = value
    return params


def _run_env(tracking_uri: str, run_id: str, experiment_id: str) -> dict[str, str]:
    """The entry point's environment: the run to write into, as MLflow's runner hands it over
    (MLFLOW_RUN_ID, so the entry point's ``mlflow.start_run()`` continues it)."""
    env = dict(os.environ)
    # The project runs `python ...` from PATH: make it this interpreter (the console's venv),
    # even when `mlops` was started by its full path without activating the venv.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["MLFLOW_RUN_ID"] = run_id
    env["MLFLOW_EXPERIMENT_ID"] = experiment_id
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Training:
    """One training: create the run, run the project's entry point in a subprocess that
    writes into it, iterate its output, then ``finish``."""

    def __init__(
        self,
        project_dir: Path,
        tracking_uri: str,
        *,
        params: dict[str, str] | None = None,
        experiment: str | None = None,
        log_path: Path | None = None,
        entry_point: str = "main",
    ) -> None:
        if not (project_dir / "MLproject").is_file():
            raise InvalidInput(f"{project_dir} is not an MLflow Project (no MLproject file)")
        self.policy = project_dir / POLICY_FILE
        if self.policy.is_file():
            from backends.policy import load_policy

            load_policy(self.policy)  # a policy that does not read is refused before training
        self.project_dir = project_dir.resolve()
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self.params = dict(params or {})
        self.entry_point = load_entry_point(self.project_dir, entry_point)
        # Refused now, before a run exists: a missing parameter, a path that is not there.
        self.shell_command = self.entry_point.shell_command(self.params)
        # An experiment id from the environment wins when no name was asked for (as MLflow's
        # runner, which refuses both together).
        self.experiment_id: str | None = (
            os.environ.get("MLFLOW_EXPERIMENT_ID") if experiment is None else None
        ) or None
        self.experiment: str | None = (
            None
            if self.experiment_id
            else experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or project_name(project_dir)
        )
        logs_dir().mkdir(parents=True, exist_ok=True)
        self.log_path = log_path or logs_dir() / f"pending-{int(time.time())}-{os.getpid()}.log"
        self.run_id: str | None = None
        self.status: str | None = None
        self.started = time.monotonic()
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None
        self._runs: ProjectRuns | None = None
        self._interrupted = False
        self._pending: list[str] = []  # our own lines, handed out before the entry point's

    def command(self) -> list[str]:
        """The entry point's command line, as run in the project directory."""
        return ["bash", "-c", self.shell_command]

    def start(self) -> None:
        """Create the run, then launch the entry point; its stdout and stderr arrive merged
        through ``lines``. A tracking server that refuses the run raises here (BackendError),
        before anything runs."""
        self._log = self.log_path.open("a", encoding="utf-8")
        # The pid lets `runs logs --follow` notice a writer that died without its last line.
        self._log.write(f"=== mlops: pid {os.getpid()}: {self.shell_command}\n")
        self._log.flush()
        self._runs = project_runs_for(self.tracking_uri)
        if self.experiment_id is None:
            assert self.experiment is not None
            self.experiment_id = self._runs.experiment_id(self.experiment)
        self.run_id = self._runs.create_run(
            self.experiment_id, run_tags(self.project_dir, self.entry_point.name)
        )
        self._adopt_log_name()
        declared, extras = self.entry_point.resolved(self.params)
        # The values as given, where MLflow's runner logs them shell-quoted (a value with a
        # space came back as "'a b'" and a retraining fed it back quoted twice).
        self._runs.log_params(self.run_id, {**declared, **extras})
        self._note(f"=== Running command '{self.shell_command}' in run with ID '{self.run_id}' ===")
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.project_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=_run_env(self.tracking_uri, self.run_id, self.experiment_id),
            errors="replace",
            # Its own group, so that an interrupt reaches every process the command started
            # (bash, the trainer and whatever it forks), as MLflow's runner cancels a run.
            process_group=0,
        )

    def _note(self, line: str) -> None:
        assert self._log is not None
        self._log.write(line + "\n")
        self._log.flush()
        self._pending.append(line)

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc else 0

    def lines(self) -> Iterator[str]:
        """Output lines as they come (newline stripped), also written to the log file."""
        assert self._proc is not None and self._proc.stdout is not None and self._log is not None
        while self._pending:
            yield self._pending.pop(0)
        for line in self._proc.stdout:
            self._log.write(line)
            self._log.flush()
            yield line.rstrip("\n")

    def _adopt_log_name(self) -> None:
        assert self.run_id is not None
        final = log_path_for(self.run_id)
        if self.log_path != final:
            self.log_path.replace(final)  # the open handle keeps writing to the renamed file
            self.log_path = final

    def interrupt(self) -> None:
        """Ctrl-C to the entry point's whole process group; its run is then marked KILLED."""
        self._interrupted = True
        if self._proc and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGINT)

    def wait(self, timeout: float | None = None) -> int:
        """The entry point's exit status (128 + signal when it was killed)."""
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            code = self._proc.wait()
        return 128 - code if code < 0 else code

    def finish(self, exit_code: int, *, upload: bool = True) -> str | None:
        """Mark the run as its entry point ended (as MLflow's runner does: FINISHED on exit 0,
        KILLED when interrupted, else FAILED), upload the log; return the run's status."""
        assert self._log is not None
        if self.run_id is not None and self._runs is not None:
            status = "FINISHED" if exit_code == 0 and not self._interrupted else "FAILED"
            if self._interrupted:
                status = "KILLED"
            try:
                self._runs.end_run(self.run_id, status)
                self.status = status
            except BackendError as exc:
                self._log.write(f"=== mlops: could not mark the run {status}: {exc}\n")
            word = "succeeded" if status == "FINISHED" else status.lower()
            self._log.write(f"=== Run (ID '{self.run_id}') {word} ===\n")
        seconds = time.monotonic() - self.started
        self._log.write(
            f"{LOG_TRAILER} {exit_code} (run {self.run_id or 'not created'}: "
            f"{self.status or 'unknown'}) after {seconds:.1f} s ===\n"
        )
        self._log.close()
        problem: BackendError | None = None
        if upload and self.run_id is not None and self._runs is not None:
            if self.policy.is_file():
                # The policy travels with the model: the gate reads it from the run. A run
                # that lost it would be judged without it, so its loss is an error.
                try:
                    self._runs.upload(self.run_id, self.policy, "")
                except BackendError as exc:
                    problem = exc
            # The local copy stays whatever happens; the artifact is a convenience.
            with contextlib.suppress(BackendError):
                _upload_log(self._runs, self.run_id, self.log_path)
        if problem is not None:
            raise problem
        return self.status


def _upload_log(runs: ProjectRuns, run_id: str, log_path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / Path(LOG_ARTIFACT).name
        shutil.copyfile(log_path, copy)
        runs.upload(run_id, copy, str(Path(LOG_ARTIFACT).parent))


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
