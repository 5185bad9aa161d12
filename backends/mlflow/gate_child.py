"""The gate's load-and-predict, in a process of its own. A candidate model (a pickle runs code
as it loads) never runs inside the operator's process, and sees no Docker socket address or
tracking credentials: its parent gives it a bare environment.

Two ways to run it:

* ``python -m backends.mlflow.gate_child MODEL_DIR [ROWS OUT]`` prints the check as JSON and
  exits: one process per check, which pays for importing MLflow and skops' trusted-type table
  (~3 s of CPU) every time.
* ``python -m backends.mlflow.gate_child --serve`` imports them once and forks a fresh child per
  check (``backends.mlflow.gate_forks`` drives it). Each check still runs in a process of its
  own that no other check has touched, with a home directory of its own, and is killed alone
  when it overruns. The protocol is JSON lines: requests ``{"id", "path", "rows"?, "out"?}``
  on stdin (with ``rows``, a JSON table, the child also writes its predictions on them to
  ``out``); answers
  ``{"id", "pid"}`` when the child is forked, ``{"id", "passed", "detail"}`` from the child, and
  ``{"id", "exit", "tail"}`` when it has ended (``tail``: the end of its output on a failure).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

_DETAIL_LIMIT = 1500  # an answer stays under PIPE_BUF: children write it in one atomic write


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    import mlflow.pyfunc

    from backends.mlflow.gate import predict_check

    rows, out = (sys.argv[2], sys.argv[3]) if len(sys.argv) == 4 else (None, None)
    check = predict_check(mlflow.pyfunc, sys.argv[1], rows, out)
    print(json.dumps({"passed": check.passed, "detail": check.detail}))


def serve() -> None:
    """Answer check requests on stdin until it closes (the parent went away)."""
    import mlflow.pyfunc  # noqa: F401  # the cost every check would pay, paid once
    import skops.io  # noqa: F401  # its trusted-type table walks every scikit-learn module

    import backends.mlflow.gate  # noqa: F401  # what each child calls

    running: dict[int, tuple[Any, str]] = {}  # pid -> (request id, its home directory)
    pending = b""
    # A child's end wakes the loop at once (its answer is complete only with its exit).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        readable, _, _ = select.select([0, wake_r], [], [], 1.0)
        if wake_r in readable:
            os.read(wake_r, 4096)
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    _start(line, running)
        _reap(running, block=False)
    for pid in running:
        _kill(pid)
    _reap(running, block=True)


def _start(line: bytes, running: dict[int, tuple[Any, str]]) -> None:
    try:
        request = json.loads(line)
        ident, path = request["id"], str(request["path"])
        rows, out = request.get("rows"), request.get("out")
        rows, out = (str(rows), str(out)) if rows and out else (None, None)
    except (ValueError, KeyError, TypeError, AttributeError):
        return  # not from our parent; nothing to answer
    home = tempfile.mkdtemp(prefix="mlops-gate-home-")
    pid = os.fork()
    if pid == 0:
        _check_in_child(ident, path, home, rows, out)  # never returns
    running[pid] = (ident, home)
    _answer(1, {"id": ident, "pid": pid})


def _check_in_child(
    ident: Any, path: str, home: str, rows: str | None = None, out: str | None = None
) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the model's own subprocesses, if any
        answers = os.dup(1)
        # What the model prints goes to a file of its own, never into the answers.
        output = os.open(os.path.join(home, "output.log"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.dup2(output, 1)
        os.dup2(output, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        import mlflow.pyfunc

        from backends.mlflow.gate import home_env, predict_check

        os.environ.update(home_env(home))
        os.chdir(home)

        check = predict_check(mlflow.pyfunc, path, rows, out)
        detail = check.detail[:_DETAIL_LIMIT]
        _answer(answers, {"id": ident, "passed": check.passed, "detail": detail})
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _reap(running: dict[int, tuple[Any, str]], *, block: bool) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            running.clear()
            return
        if pid == 0:
            return
        ident, home = running.pop(pid, (None, ""))
        code = os.waitstatus_to_exitcode(status)
        tail = "" if code == 0 else _tail(Path(home) / "output.log")
        shutil.rmtree(home, ignore_errors=True)
        if ident is not None:
            _answer(1, {"id": ident, "exit": code, "tail": tail})


def _tail(path: Path) -> str:
    try:
        words = path.read_text(errors="replace").split()
    except OSError:
        return ""
    return " ".join(words[-40:])[-_DETAIL_LIMIT:]


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def _answer(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(message) + "\n").encode())


if __name__ == "__main__":
    main()
