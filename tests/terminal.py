"""Run a command on a pseudo-terminal, as a person at a shell would: it sees a terminal on
stdin (so `mlops` asks before it applies a plan), and the test answers its question."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

HANG_GUARD = 120.0  # seconds: only stops a hung test; a slow machine is waited for


class Terminal:
    """One command on a pty; ``wait_for`` reads what it printed, ``type`` answers it."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None = None) -> None:
        master, slave = pty.openpty()
        self._master = master
        self.output = ""
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        os.close(slave)

    def _read(self, wait: float) -> None:
        ready, _, _ = select.select([self._master], [], [], wait)
        if ready:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # the command exited and closed its side
                return
            self.output += chunk.decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, text: str) -> str:
        """Until ``text`` was printed (fails with everything printed if it never is)."""
        deadline = time.monotonic() + HANG_GUARD
        while text not in self.output:
            if time.monotonic() > deadline or (self.proc.poll() is not None and not self._more()):
                raise AssertionError(f"{text!r} never printed; got:\n{self.output}")
            self._read(0.2)
        return self.output

    def _more(self) -> bool:
        before = len(self.output)
        self._read(0.2)
        return len(self.output) > before

    def type(self, text: str) -> None:
        os.write(self._master, text.encode())

    def finish(self) -> tuple[int, str]:
        """Wait for the command to exit; its exit code and everything it printed."""
        deadline = time.monotonic() + HANG_GUARD
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._more():
            pass
        code = self.proc.wait(timeout=10)
        os.close(self._master)
        return code, self.output
