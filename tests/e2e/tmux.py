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

# The variables that steer `mlops` to a backend or context: a session gets only those it names.
AMBIENT = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLOPS_CONTEXT",
    "MLOPS_READ_ONLY",
    "PROMETHEUS_URL",
    "ALERTMANAGER_URL",
    "MLOPS_MONITOR_TARGETS",
)
HANG_GUARD = 60.0  # seconds: the shortest wait for anything on screen
LABEL_WIDTH = 24  # columns: the console's form labels (`.train-label` in app.tcss)
FIELD_SAMPLE = 12  # columns of an input looked at to tell whether it has the focus
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")


def _cells(line: str) -> list[tuple[str, str]]:
    """One captured line as (character, background) cells. Only SGR sequences reach a
    ``capture-pane -e`` capture; the background is kept as its code ("" for the default),
    and reverse video counts as a background of its own (a cursor)."""
    cells: list[tuple[str, str]] = []
    bg, reverse, at = "", False, 0
    for found in _SGR.finditer(line):
        cells.extend((char, bg + ("~" if reverse else "")) for char in line[at : found.start()])
        at = found.end()
        codes = found.group(1).replace(":", ";").split(";") if found.group(1) else ["0"]
        i = 0
        while i < len(codes):
            code = codes[i] or "0"
            if code == "0":
                bg, reverse = "", False
            elif code == "7":
                reverse = True
            elif code == "27":
                reverse = False
            elif code == "49":
                bg = ""
            elif code == "48" and i + 1 < len(codes):
                take = 3 if codes[i + 1] == "5" else 5
                bg = ";".join(codes[i : i + take])
                i += take - 1
            elif code in ("38", "58") and i + 1 < len(codes):
                i += 2 if codes[i + 1] == "5" else 4  # a foreground colour: skipped
            elif code.isdigit() and (40 <= int(code) <= 47 or 100 <= int(code) <= 107):
                bg = code
            i += 1
    cells.extend((char, bg + ("~" if reverse else "")) for char in line[at:])
    return cells


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
        # What another test may have left in this process's environment never reaches the
        # program: it gets only what this session names (tmux hands it the rest).
        unset = " ".join(f"-u {k}" for k in AMBIENT if k not in (env or {}))
        # `remain-on-exit` keeps the pane so a crash's traceback can still be read.
        # COLUMNS/LINES left in the test process's environment (some tools set them) would
        # override the pane's real size in Textual.
        shell_cmd = f"env -u COLUMNS -u LINES {unset} {exports} {command}"
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

    def styled_screen(self) -> list[list[tuple[str, str]]]:
        """The screen as rows of (character, background) cells, from ``capture-pane -e``: a
        focused Textual input is told apart by its tinted background, whatever it holds."""
        out = subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-e", "-t", self.name],
            capture_output=True,
            text=True,
        )
        return [_cells(line) for line in out.stdout.split("\n")]

    def filter_rows(self, text: str) -> None:
        """``/``, ``text``, enter, as a person narrows a list, and on only once the focus has
        left the row filter for the list: a key sent while the filter still holds the focus
        (enter queued behind a slow frame) is typed into the filter instead of acting."""
        self.send("/")
        # Keys that reach the app before `/` is handled go to the list: the prompt first.
        self.wait_for("filter: part of")
        focused = self._focused_filter_background("filter: part of")
        self.press(text, "Enter")
        deadline = time.monotonic() + HANG_GUARD
        while (look := self._filter_look(text)) is None or look[1] or look[0] == focused:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the row filter kept the focus after enter (its background {focused!r} "
                    f"while focused, now {look!r}):\n{self.screen()}"
                )
            time.sleep(0.1)

    def _focused_filter_background(self, holding: str) -> str:
        """The row filter's background while it has the focus, read from a frame that shows its
        cursor (only a focused input draws one). Not from the first frame that shows the
        filter: Textual draws the filter `/` uncovers before the input has handled its focus
        event, for a frame, untinted; under load that frame stays up long enough to be read,
        and the untinted shade taken for the focused one makes the filter, unfocused by enter,
        look as if it kept the focus."""
        deadline = time.monotonic() + HANG_GUARD
        while (look := self._filter_look(holding)) is None or not look[1]:
            if time.monotonic() > deadline:
                raise AssertionError(f"the row filter never showed a cursor:\n{self.screen()}")
            time.sleep(0.05)  # the cursor blinks: shown half of each second
        return look[0]

    def _filter_look(self, holding: str) -> tuple[str, bool] | None:
        """How the row filter's line looks while it shows ``holding``: its usual background
        (Textual tints a focused input) and whether a cell stands out from it (the cursor, one
        cell, drawn only while the input has the focus, and blinking); None when no such line
        is on the screen."""
        for cells in self.styled_screen():
            line = "".join(char for char, _ in cells)
            if re.match(r"▊\s+" + re.escape(holding) + r"(\s|\(|$)", line):
                inner = [bg for _, bg in cells[1:-1]]
                usual = max(set(inner), key=inner.count)
                return usual, any(bg != usual for bg in inner)
        return None

    def focused_field(self, labels: list[str], width: int = LABEL_WIDTH) -> str | None:
        """Which of the form rows ``labels`` (a label ``width`` columns wide, then an input)
        holds the focus: the one row whose input shows a background the others do not (Textual
        tints a focused input; its selection and cursor differ too). None when no row stands
        out: the focus is elsewhere, or a row is off the screen."""
        rows: dict[str, frozenset[str]] = {}
        for cells in self.styled_screen():
            text = "".join(char for char, _ in cells)
            for label in labels:
                found = re.search(r"(?:^|\s)(" + re.escape(label) + r")(?=\s|$)", text)
                if found and label not in rows:
                    start = found.start(1) + width
                    rows[label] = frozenset(bg for _, bg in cells[start : start + FIELD_SAMPLE])
        if len(rows) < len(labels):
            return None
        counts: dict[frozenset[str], int] = {}
        for seen in rows.values():
            counts[seen] = counts.get(seen, 0) + 1
        usual = max(counts, key=lambda seen: counts[seen])
        odd = [label for label, seen in rows.items() if seen != usual]
        return odd[0] if len(odd) == 1 else None

    def field_value(self, label: str, placeholder: str = "") -> str | None:
        """What the input after ``label`` shows ("" when it shows its placeholder)."""
        for line in self.screen().split("\n"):
            found = re.search(r"(?:^|\s)" + re.escape(label) + r"[ \t]*(.*?)\s*$", line)
            if found:
                shown = found.group(1)
                if placeholder and shown.startswith(placeholder):
                    return ""
                return shown.split("  ")[0]  # a button may follow the input on its row
        return None

    def fill(
        self,
        rows: list[str],
        values: dict[str, str],
        placeholders: dict[str, str] | None = None,
    ) -> None:
        """Make each form row named in ``values`` hold its value, as a person would: look at
        which row has the focus, Tab or Shift+Tab toward the wanted one, type or delete one key
        at a time and look again. Under load the app can read several keys at once and drop
        one (Textual 8 with tmux 3.3), or show a key late; every step is judged from the
        screen, so a lost key is sent again and a doubled one taken back. ``rows`` are all
        the form's rows in focus order."""
        placeholders = placeholders or {}
        for _ in range(3):  # a last look: a late key may have landed after its row was done
            for label, want in values.items():
                self._settle(rows, label, want, placeholders.get(label, ""))
            if all(
                self.field_value(label, placeholders.get(label, "")) == want
                for label, want in values.items()
            ):
                return
        raise AssertionError(f"the form does not hold {values}:\n{self.screen()}")

    def _settle(self, rows: list[str], label: str, want: str, placeholder: str) -> None:
        deadline = time.monotonic() + max(len(want) * 10.0, HANG_GUARD) * 2
        target = rows.index(label)
        while True:
            focused = self.focused_field(rows)
            shown = self.field_value(label, placeholder)
            if shown == want:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{label}: {shown!r} (want {want!r}), focus on {focused!r}:\n{self.screen()}"
                )
            if focused is None:
                time.sleep(0.2)  # between two frames, or the focus left the form: look again
                if self.focused_field(rows) is None:
                    self.send("BTab")
                    self._changed(lambda: self.focused_field(rows))
                continue
            if focused != label:
                key = "Tab" if rows.index(focused) < target else "BTab"
                self.send(key)
                self._changed(lambda: self.focused_field(rows))
                continue
            if shown is None:  # the row is covered (a notice) or off the screen: look again
                time.sleep(0.2)
                continue
            # The next character, or a wrong or doubled key taken back.
            self.send(want[len(shown)] if want.startswith(shown) else "BSpace")
            self._changed(lambda: self.field_value(label, placeholder))

    def _changed(self, look: Callable[[], object], wait: float = 5.0) -> None:
        """Until what ``look`` sees differs from what it saw first, or ``wait`` seconds: a key
        that shows no effect by then is judged again from the screen."""
        before = look()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and look() == before:
            time.sleep(0.1)

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

    def quit(self, timeout: float = 60) -> None:
        """``q`` until the program ends. An Escape pressed just before reaches a loaded app in
        the same read as the ``q`` however far apart they were sent, and ESC+q is alt+q, which
        nothing binds: the ``q`` is pressed again if the program is still there after a while
        (a second ``q`` to a program already quitting does nothing)."""
        deadline = time.monotonic() + max(timeout, HANG_GUARD)
        while time.monotonic() < deadline:
            self.send("q")
            again = time.monotonic() + 10
            while time.monotonic() < min(again, deadline):
                if self.pane_dead():
                    return
                time.sleep(0.2)
        raise AssertionError(f"program still running after {timeout}s:\n{self.screen()}")

    def wait_exit(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + max(timeout, HANG_GUARD)
        while time.monotonic() < deadline:
            if self.pane_dead():
                return
            time.sleep(0.2)
        raise AssertionError(f"program still running after {timeout}s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)
