"""The gate's predict checks forked from one warm process (``gate_child --serve``).

A check in a fresh ``python`` pays ~3 s of CPU importing MLflow and building skops' trusted-type
table before it loads a model of a few kilobytes. The console, the hooks server and a test run
promote many times in one process, so the first check starts a process that has imported them
once, with the bare environment of the checks, and every check is a fork of it: a process of its
own, unseen by any other check, killed alone when it overruns. A one-shot `mlops models promote`
pays what it paid before.

``check`` returns None when the warm process cannot answer (it failed to start, or died with the
check in flight): the caller then runs the check the one-shot way. ``MLOPS_GATE_WARM=0`` turns
the warm process off.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import IO, Any

from backends.records import GateCheck

__all__ = ["check", "enabled", "stop"]

# One BLAS thread: polite on a shared box, and a process with no helper threads forks cleanly.
_SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def enabled() -> bool:
    return os.environ.get("MLOPS_GATE_WARM", "1") != "0"


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    pid: int = 0
    answer: dict[str, Any] | None = None
    exit: int | None = None
    tail: str = ""
    lost: bool = False  # the warm process ended before this check did
    ident: int = 0


class _Warm:
    """One ``gate_child --serve`` process and the checks in flight in it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.home = tempfile.mkdtemp(prefix="mlops-gate-warm-")
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._alive = True
        stderr = open(os.path.join(self.home, "stderr.log"), "wb")  # noqa: SIM115  # the child keeps it
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "backends.mlflow.gate_child", "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**env, **_SINGLE_THREADED, "HOME": self.home},
                cwd=self.home,
            )
        finally:
            stderr.close()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin: IO[bytes] = self.proc.stdin
        threading.Thread(
            target=self._read, args=(self.proc.stdout,), name="gate-warm", daemon=True
        ).start()

    @property
    def alive(self) -> bool:
        return self._alive and self.proc.poll() is None

    def submit(self, path: str, rows: str | None = None, out: str | None = None) -> _Pending | None:
        pending = _Pending()
        with self._lock:
            if not self._alive:
                return None
            pending.ident = next(self._ids)
            self._pending[pending.ident] = pending
            try:
                request = {"id": pending.ident, "path": path, "rows": rows, "out": out}
                self._stdin.write(json.dumps(request).encode() + b"\n")
                self._stdin.flush()
            except (OSError, ValueError):
                self._pending.pop(pending.ident, None)
                return None
        return pending

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            try:
                message = json.loads(line)
                ident = int(message["id"])
            except (ValueError, KeyError, TypeError):
                continue
            with self._lock:
                pending = self._pending.get(ident)
                if pending is None:
                    continue  # a check we gave up on
                if "pid" in message:
                    pending.pid = int(message["pid"])
                elif "exit" in message:
                    pending.exit, pending.tail = int(message["exit"]), str(message.get("tail", ""))
                    self._pending.pop(ident, None)
                    pending.done.set()
                else:
                    pending.answer = message
        with self._lock:
            self._alive = False
            for pending in self._pending.values():
                pending.lost = True
                pending.done.set()
            self._pending.clear()

    def forget(self, pending: _Pending) -> None:
        with self._lock:
            self._pending.pop(pending.ident, None)

    def stop(self) -> None:
        with self._lock:
            self._alive = False
        with contextlib.suppress(OSError, ValueError):
            self._stdin.close()  # it ends its checks and exits on EOF
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


_WARM: _Warm | None = None
_WARM_LOCK = threading.Lock()


def _warm_for(env: dict[str, str]) -> _Warm | None:
    global _WARM
    with _WARM_LOCK:
        if _WARM is not None and (_WARM.env != env or not _WARM.alive):
            _WARM.stop()
            _WARM = None
        if _WARM is None:
            try:
                _WARM = _Warm(env)
            except OSError:
                return None
        return _WARM


def check(
    path: str,
    timeout: float,
    env: dict[str, str],
    rows: str | None = None,
    out: str | None = None,
) -> GateCheck | None:
    """The predict check of the model at ``path`` in a fork of the warm process (and its
    predictions on ``rows`` into ``out``); None when that process cannot run it (the caller
    runs it the one-shot way)."""
    warm = _warm_for(env)
    pending = warm.submit(path, rows, out) if warm else None
    if warm is None or pending is None:
        return None
    if not pending.done.wait(timeout):
        warm.forget(pending)
        if pending.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pending.pid, 9)
        else:  # forked or not, we cannot tell which: start afresh
            warm.stop()
        return GateCheck("predict", False, f"loading and predicting took over {timeout:g}s")
    if pending.answer is not None:
        return GateCheck("predict", bool(pending.answer["passed"]), str(pending.answer["detail"]))
    if pending.lost:
        return None
    return GateCheck("predict", False, f"the check process failed ({pending.exit}): {pending.tail}")


def stop() -> None:
    """End the warm process (at exit; tests that count processes)."""
    global _WARM
    with _WARM_LOCK:
        if _WARM is not None:
            _WARM.stop()
            _WARM = None


atexit.register(stop)
