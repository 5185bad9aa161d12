"""Progress on stderr, the one way every `mlops` command shows it; outcomes go to stdout.

On a terminal (stderr a TTY) the current step is a live display: a spinner, a bar when the step
says how far along it is ("Step 3/12 : ...", "[2/6] ..."), its text, its elapsed time, and its
latest detail; each finished step stays above it as a line with how long it took. Anywhere else
(a pipe, a CI log, a test) the same steps are plain lines, so logs stay readable. rich is
imported only when there is a terminal to draw on.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.progress import Progress, Task, TaskID
    from rich.text import Text

__all__ = ["Steps", "build_log", "stderr_is_terminal", "step_count"]

_COUNT = re.compile(r"^\s*(?:Step (\d+)/(\d+)\b|\[(\d+)/(\d+)\])")
# Docker's bookkeeping between steps: never worth a line.
_DOCKER_CHATTER = (" ---> Running in", "Removing intermediate")
# Our own build lines (backends.lifecycle.build, backends.docker.images): each starts a step.
_BUILD_STEPS = ("downloading ", "building ", "no image for ")


def step_count(text: str) -> tuple[int, int] | None:
    """(N, M) when ``text`` says it is step N of M (Docker's "Step 3/12 : ..." or our
    "[2/6] ..."), else None."""
    match = _COUNT.match(text)
    if match is None:
        return None
    n, m = (int(g) for g in match.groups() if g is not None)
    return (n, m) if 0 < n <= m else None


def stderr_is_terminal() -> bool:
    """Whether a live display can be drawn: stderr is a TTY that is not a dumb terminal."""
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


class Steps:
    """One command's progress, as a context manager: the live display ends with the block.

    ``live`` defaults to whether stderr is a terminal; ``silent`` (``--quiet``) says nothing.
    """

    def __init__(
        self, *, live: bool | None = None, silent: bool = False, console: Console | None = None
    ) -> None:
        self.silent = silent
        self.live = not silent and (stderr_is_terminal() if live is None else live)
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._notes: list[str] = []  # the current step's notes, printed after it ends

    def __enter__(self) -> Steps:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def step(self, text: str) -> None:
        """The current step is now ``text`` (the one before it is done)."""
        if self.silent:
            return
        if not self.live:
            typer.echo(text, err=True)
            return
        progress = self._display()
        self._end_step(progress)
        count = step_count(text)
        total, done = (count[1], count[0] - 1) if count else (None, 0)
        self._task = progress.add_task(text, total=total, completed=done, detail="")

    def detail(self, text: str) -> None:
        """A line within the current step: the latest one beside it on a terminal, a plain
        line elsewhere."""
        if self.silent:
            return
        if not self.live or self._task is None:
            self.line(text)
            return
        self.status(text)

    def status(self, text: str) -> None:
        """Beside the current step on a terminal (the latest only); nothing elsewhere: for
        what is worth watching but not worth a line in a log (a running count)."""
        if self.live and self._progress is not None and self._task is not None:
            self._progress.update(self._task, detail=text)

    def note(self, text: str) -> None:
        """A line of the current step's own (a run's accuracy): beside it while it runs, and
        below its finished line afterwards, so the scrollback reads in order; a plain line
        elsewhere."""
        if self.silent:
            return
        if not self.live or self._task is None:
            self.line(text)
            return
        self._notes.append(text)
        self.status(text.strip())

    def line(self, text: str) -> None:
        """A line that stays: above the display on a terminal, a plain line elsewhere."""
        if self.silent:
            return
        if not self.live:
            typer.echo(text, err=True)
            return
        self._display().console.print(_plain(text))

    def close(self) -> None:
        """End the current step and the display (the finished lines stay)."""
        if self._progress is None:
            return
        self._end_step(self._progress)
        self._progress.stop()
        self._progress = None

    def _display(self) -> Progress:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                ProgressColumn,
                SpinnerColumn,
                TimeElapsedColumn,
            )
            from rich.table import Column

            class CountedBar(BarColumn):
                """A bar only for a step that says how far along it is; else nothing."""

                def render(self, task: Task) -> RenderableType:  # type: ignore[override]
                    return super().render(task) if task.total is not None else ""

            class Plain(ProgressColumn):
                """A task's text or field as it is (no markup): a build line may hold brackets."""

                def __init__(self, field: str, table_column: Column, style: str = "") -> None:
                    super().__init__(table_column=table_column)
                    self.field, self.style = field, style

                def render(self, task: Task) -> Text:
                    text = task.description if self.field == "" else task.fields[self.field]
                    return _plain(str(text), style=self.style)

            self._progress = Progress(
                SpinnerColumn(),
                TimeElapsedColumn(table_column=Column(min_width=7, no_wrap=True)),
                CountedBar(bar_width=20),
                # The step takes what is left of the width after its latest detail (at most
                # 40 columns, and none when there is no detail).
                Plain("", Column(no_wrap=True, overflow="ellipsis", ratio=1, min_width=20)),
                Plain("detail", Column(no_wrap=True, overflow="ellipsis", max_width=40), "dim"),
                console=self._console or Console(stderr=True),
                transient=True,
                redirect_stdout=False,  # stdout is for outcomes: never routed through here
                expand=True,
            )
            self._progress.start()
        return self._progress

    def _end_step(self, progress: Progress) -> None:
        if self._task is None:
            return
        task = next(t for t in progress.tasks if t.id == self._task)
        took = _took(task.elapsed or 0.0)
        progress.remove_task(self._task)
        self._task = None
        done = _plain(task.description)
        done.append(f"  ({took})", style="dim")
        progress.console.print(done)
        for note in self._notes:
            progress.console.print(_plain(note))
        self._notes = []


def _plain(text: str, style: str = "") -> Text:
    """Text as it is: no markup, no highlighting (a build line may hold brackets)."""
    from rich.text import Text

    return Text(text, style=style)


def _took(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def build_log(steps: Steps, *, details: bool = True) -> Callable[[str], None]:
    """An image build's log lines (ours and Docker's) as steps: our own lines and Docker's
    "Step N/M" start one; Docker's other output is a detail (a plain line off a terminal
    only with ``details``); the intermediate-container chatter is dropped."""

    def on_log(line: str) -> None:
        if line.startswith(_DOCKER_CHATTER):
            return
        if step_count(line) is not None or line.startswith(_BUILD_STEPS):
            steps.step(line)
        elif details:
            steps.detail(line)
        else:
            steps.status(line)

    return on_log
