"""`mlops train`: run an MLflow Project with the local environment, stream it, keep its log."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from console.cli.common import (
    JsonOpt,
    backend_errors,
    exit_code_for,
    fail,
    print_json,
    refuse_if_read_only,
)
from console.cli.exit_codes import ExitCode
from console.config import default_project

DETACH_WAIT_SECONDS = 120.0


def train(
    project_dir: Annotated[
        Path | None,
        typer.Argument(
            help="MLflow Project directory (default: examples/iris).", show_default=False
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-P", metavar="KEY=VALUE", help="Entry-point parameter (repeatable)."
        ),
    ] = None,
    experiment: Annotated[
        str | None,
        typer.Option(
            "--experiment",
            "-e",
            help="Experiment name (default: $MLFLOW_EXPERIMENT_NAME, else the project's name).",
        ),
    ] = None,
    register_as: Annotated[
        str | None,
        typer.Option("--register-as", help="Register the trained model under this name."),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option("--detach", "-d", help="Return with the run id; `mlops runs logs` follows."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not stream the training output.")
    ] = False,
    as_json: JsonOpt = False,
    run_id_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
    log_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
) -> None:
    """Train: run an MLflow Project's entry point in a new run and exit with its status.

    Output is streamed and kept (`mlops runs logs RUN_ID`); the run id is printed. A failed
    training exits non-zero and its run is marked FAILED. With --json the training's output
    goes to stderr and stdout holds one document: the run, its status, the registered version.
    """
    refuse_if_read_only("train")
    from backends.mlflow.training import Training, parse_params
    from console.config import Settings

    project = project_dir or default_project()
    settings = Settings.from_env()
    with backend_errors():
        params = parse_params(param or [])
        if not (project / "MLproject").is_file():
            fail(f"{project} is not an MLflow Project (no MLproject file)", ExitCode.USAGE)
        from backends.mlflow.client import probe

        probe(settings.tracking_uri)  # unreachable → exit 3 now, not after MLflow's retries
        if detach:
            _detach(project, params, experiment, register_as, as_json=as_json)
            return
        job = Training(
            project, settings.tracking_uri, params=params, experiment=experiment, log_path=log_file
        )
        job.start()  # the run is created here: a server that refuses it exits 3 or 5 now
    interrupted = False
    handed_over = run_id_file is None
    try:
        for line in job.lines():
            if job.run_id and not handed_over and run_id_file is not None:
                _write_atomically(run_id_file, job.run_id)  # once: the reader deletes it
                handed_over = True
            if not quiet:
                typer.echo(line, err=as_json)  # --json: stdout is for the document
    except KeyboardInterrupt:
        interrupted = True
        job.interrupt()
    code = job.wait(timeout=60 if interrupted else None)
    if interrupted:
        code = 130  # the shell's convention for Ctrl-C, whatever the runner returned
    status = job.finish(code)
    if job.run_id is None:
        typer.echo(
            f"error: training failed before MLflow created a run (log: {job.log_path})", err=True
        )
        raise typer.Exit(code or 1)
    where = job.experiment or f"id {os.environ.get('MLFLOW_EXPERIMENT_ID')}"
    outcome = _outcome(job.run_id, status, where, exit_code=code, log_path=job.log_path)
    if not as_json:
        typer.echo(f"run_id={job.run_id} status={status or 'unknown'} experiment={where}")
    if code != 0:
        if as_json:
            print_json(outcome)  # the run and its FAILED status, then the error and its code
        typer.echo(f"error: training exited with status {code}; log: {job.log_path}", err=True)
        raise typer.Exit(code)
    if register_as:
        from backends.errors import BackendError
        from backends.mlflow.training import register_model

        try:
            version = register_model(settings.tracking_uri, job.run_id, register_as)
        except BackendError as exc:
            if as_json:
                print_json(outcome)  # trained, not registered: the run is still worth naming
            fail(f"{exc.title}: {exc.message}", exit_code_for(exc))
        outcome["registered"] = version
        if not as_json:
            typer.echo(f"registered {version.name} version {version.version}")
    if as_json:
        print_json(outcome)


def _outcome(
    run_id: str,
    status: str | None,
    experiment: str | None,
    *,
    exit_code: int | None,
    log_path: Path,
    pid: int | None = None,
) -> dict[str, object]:
    """`mlops train --json`: the same keys whether it trained here or in the background
    (``detached``: ``status`` is the run's as it was handed over, ``exit_code`` None)."""
    return {
        "run_id": run_id,
        "status": status,
        "experiment": experiment,
        "exit_code": exit_code,
        "log_path": str(log_path),
        "registered": None,
        "detached": pid is not None,
        "pid": pid,
    }


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _detach(
    project: Path,
    params: dict[str, str],
    experiment: str | None,
    register_as: str | None,
    *,
    as_json: bool = False,
) -> None:
    """Start this same command in its own session, wait for the run id, print it, return.

    The background `mlops train` streams nothing; it keeps the log, marks the run if it dies,
    uploads the log and registers the model (``--register-as``) when training ends.
    """
    from backends.mlflow.training import logs_dir

    logs_dir().mkdir(parents=True, exist_ok=True)
    log_file = logs_dir() / f"pending-{int(time.time())}-{os.getpid()}-detached.log"
    handoff = Path(tempfile.mkdtemp(prefix="mlops-train-")) / "run_id"
    args = ["train", str(project.resolve()), "--quiet", "--run-id-file", str(handoff)]
    args += ["--log-file", str(log_file)]
    for key, value in params.items():
        args += ["-P", f"{key}={value}"]
    if experiment:
        args += ["--experiment", experiment]
    if register_as:
        args += ["--register-as", register_as]
    with log_file.open("a", encoding="utf-8") as own_output:
        # Its own messages (and a traceback, should it crash) land in the training log too.
        child = subprocess.Popen(
            [sys.executable, "-c", "from console.cli.main import run; run()", *args],
            stdin=subprocess.DEVNULL,
            stdout=own_output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C or a closed terminal here must not reach it
        )
    deadline = time.monotonic() + DETACH_WAIT_SECONDS
    while time.monotonic() < deadline:
        if handoff.exists():
            run_id = handoff.read_text().strip()
            handoff.unlink(missing_ok=True)
            handoff.parent.rmdir()
            if as_json:
                from backends.mlflow.training import log_path_for

                log_path = log_path_for(run_id)
                running = _outcome(
                    run_id, "RUNNING", experiment, exit_code=None, log_path=log_path, pid=child.pid
                )
                print_json(running)
            else:
                typer.echo(run_id)
            typer.echo(
                f"training in the background (pid {child.pid}); "
                f"follow it with: mlops runs logs {run_id} --follow",
                err=True,
            )
            return
        if child.poll() is not None:
            tail = _tail(log_file)
            fail(
                f"training exited with status {child.returncode} before MLflow created a run"
                + (f":\n{tail}" if tail else ""),
                ExitCode.CHECK_FAILED if child.returncode == 0 else ExitCode(1),
            )
        time.sleep(0.1)
    fail(
        f"no run id after {DETACH_WAIT_SECONDS:.0f} s; training continues (pid {child.pid}), "
        f"log: {log_file}",
        ExitCode.CHECK_FAILED,
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
