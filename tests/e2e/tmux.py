"""Drive a real terminal program through tmux: send keys, read the screen."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable

from tests.services import service_missing

HANG_GUARD = 60.0  # seconds: the shortest wait for anything on screen


class TmuxSession:
    """One detached tmux session running a command at a fixed size, on a tmux server of its own
    (``-L``): a tmux server already running (an operator's, an earlier run's) would hand the
    session its own global environment instead of this test's."""

    def __init__(
        self,
        command: str,
        *,
        width: int = 160,
        height: int = 48,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        if shutil.which("tmux") is None:
            service_missing("tmux is not installed (apt-get install tmux)")
        self.name = f"mlops-e2e-{uuid.uuid4().hex[:8]}"
        self.tmux = ["tmux", "-L", self.name, "-f", "/dev/null"]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # `remain-on-exit` keeps the pane so a crash's traceback can still be read.
        # COLUMNS/LINES left in the test process's environment (some tools set them) would
        # override the pane's real size in Textual.
        shell_cmd = f"env -u COLUMNS -u LINES {exports} {command}"
        subprocess.run(
            [
                *self.tmux,
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                str(width),
                "-y",
                str(height),
                *(["-c", cwd] if cwd else []),
                shell_cmd,
            ],
            check=True,
        )
        subprocess.run(
            [*self.tmux, "set-option", "-t", self.name, "remain-on-exit", "on"], check=True
        )

    def screen(self) -> str:
        out = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        )
        return out.stdout

    def send(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", self.name, *keys], check=True)

    def press(self, *keys: str, pause: float = 0.05) -> None:
        """One key per write, as a person types: Textual drops what follows a backspace that
        arrives in the same read as other keys (seen with tmux 3.3 and Textual 8)."""
        for key in keys:
            self.send(key)
            time.sleep(pause)

    def retype(self, label: str, new: str, timeout: float = 60) -> None:
        """Replace the value shown after ``label`` by ``new``, one key at a time, each seen on
        the screen before the next. Under load the app reads several keys at once, and
        Textual drops a key that arrives in the same read as a backspace (tmux 3.3, Textual
        8): a key whose effect does not show is sent again."""
        pattern = re.compile(re.escape(label) + r"[ \t]*(\S*)")

        def value() -> str | None:
            found = pattern.search(self.screen())
            return found.group(1) if found else None

        def step(key: str, done: Callable[[str | None], bool]) -> None:
            before = value()
            deadline = time.monotonic() + max(timeout, HANG_GUARD)
            self.send(key)
            again = time.monotonic() + 5
            while not done(now := value()):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{label}: {now!r} after {key}")
                if now == before and time.monotonic() > again:
                    self.send(key)  # lost: nothing changed on screen
                    again = time.monotonic() + 5
                time.sleep(0.1)

        while (shown := value()) not in ("", None):
            # The field may select all on focus (one backspace clears it) or not.
            step("BSpace", lambda now, was=shown: now is not None and len(now) < len(was))
        for i, char in enumerate(new):
            step(char, lambda now, want=new[: i + 1]: now == want)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Until ``text`` is on the screen. ``timeout`` is a hang guard, never under a minute:
        a loaded machine is slower, and is waited for."""
        timeout = max(timeout, HANG_GUARD)
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{screen}")

    def wait_for_count(self, text: str, count: int, timeout: float = 60) -> str:
        """Until ``text`` shows at least ``count`` times (e.g. one per row of a table)."""
        timeout = max(timeout, HANG_GUARD)
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not {count} times on screen after {timeout}s:\n{screen}")

    def wait_gone(self, text: str, timeout: float = 60) -> None:
        """Until ``text`` is off the screen (a dialog closed, a notice timed out)."""
        deadline = time.monotonic() + max(timeout, HANG_GUARD)
        while text in (screen := self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} still on screen:\n{screen}")
            time.sleep(0.2)

    def promote_dialog(self, model: str, version: int, tries: int = 8) -> str:
        """``p`` on the versions table until its dialog promotes ``version``, as a person
        would: under load a cursor key can be lost, which shows as a dialog (or an "already
        points at" notice) about a neighbour; that one is cancelled, the cursor moved toward
        ``version`` (newest first: a higher version is above), and ``p`` pressed again."""
        title = f"Promote {model}?"
        shown: int | None = None
        for _ in range(tries):
            self.send("p")
            deadline = time.monotonic() + HANG_GUARD
            while True:
                screen = self.screen()
                if title in screen:
                    found = re.search(r"to   version (\d+)", screen)
                    shown = int(found.group(1)) if found else None
                    if shown == version:
                        return screen
                    self.send("Escape")
                    self.wait_gone(title)
                    break
                if found := re.search(r"already points at version (\d+)", screen):
                    shown = int(found.group(1))
                    self.wait_gone("already points at version")
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"no promote dialog after p:\n{screen}")
                time.sleep(0.2)
            self.press("Down" if shown is None or shown > version else "Up", pause=0.3)
        raise AssertionError(f"the promote dialog never offered version {version} (last {shown})")

    def pane_dead(self) -> bool:
        out = subprocess.run(
            [*self.tmux, "display-message", "-p", "-t", self.name, "#{pane_dead}"],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() == "1"

    def wait_exit(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + max(timeout, HANG_GUARD)
        while time.monotonic() < deadline:
            if self.pane_dead():
                return
            time.sleep(0.2)
        raise AssertionError(f"program still running after {timeout}s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)
