"""console.cli.progress: steps as plain stderr lines off a terminal, a live display on one,
never a byte on stdout."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from console.cli.progress import Steps, build_log, stderr_is_terminal, step_count

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("Step 3/12 : RUN pip install", (3, 12)),
        ("[2/6] training iris", (2, 6)),
        ("      Step 1/9 : FROM mlops-base:bookworm", (1, 9)),
        ("building mlops/iris:v1 for models:/iris/1", None),
        ("Step 13/12 : nonsense", None),
        ("[0/6] nothing", None),
        ("Steps 1/2", None),
    ],
)
def test_a_step_says_how_far_along_it_is(text: str, count: tuple[int, int] | None) -> None:
    assert step_count(text) == count


def test_off_a_terminal_steps_are_plain_lines_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with Steps(live=False) as steps:
        steps.step("[1/6] training iris")
        steps.detail("      Step 1/9 : FROM base")
        steps.status("1,000 runs listed")  # a running count: not worth a line in a log
        steps.line("      run abc: accuracy 0.953")
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "[1/6] training iris",
        "      Step 1/9 : FROM base",
        "      run abc: accuracy 0.953",
    ]


def test_silent_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with Steps(live=True, silent=True) as steps:
        steps.step("Step 1/2 : FROM base")
        steps.line("a line")
    assert capsys.readouterr() == ("", "")


def test_the_default_follows_whether_stderr_is_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not stderr_is_terminal() and not Steps().live
    monkeypatch.setattr("sys.stderr", Tty())
    monkeypatch.setenv("TERM", "xterm-256color")
    assert stderr_is_terminal() and Steps().live
    monkeypatch.setenv("TERM", "dumb")
    assert not Steps().live


def test_on_a_terminal_each_finished_step_stays_with_how_long_it_took(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console, drawn = terminal()
    with Steps(live=True, console=console) as steps:
        steps.line("tracking store: sqlite:///mlflow.db")
        steps.step("Step 1/2 : FROM [base]")  # brackets are text, not rich markup
        steps.detail(" ---> Using cache")
        steps.step("Step 2/2 : RUN pip install")
    assert capsys.readouterr() == ("", "")  # stdout untouched; everything went to the console
    lines = [ANSI.sub("", line).strip() for line in drawn.getvalue().splitlines()]
    kept = [line for line in lines if line.endswith(" s)")]
    assert [re.sub(r"\(\d+\.\d s\)$", "(T)", line) for line in kept] == [
        "Step 1/2 : FROM [base]  (T)",
        "Step 2/2 : RUN pip install  (T)",
    ]
    assert "tracking store: sqlite:///mlflow.db" in lines
    assert steps._progress is None  # the display ended with the block


def test_a_counted_step_draws_a_bar_and_an_uncounted_one_does_not() -> None:
    console, drawn = terminal()
    with Steps(live=True, console=console) as steps:
        steps.step("downloading models:/iris/1")
        assert steps._progress is not None
        (task,) = steps._progress.tasks
        assert task.total is None  # a spinner and the elapsed time only
        steps.step("Step 3/12 : RUN pip install")
        (task,) = steps._progress.tasks
        assert (task.completed, task.total) == (2, 12)
    assert "━" in drawn.getvalue()


def test_build_log_routes_docker_lines(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        "downloading models:/iris/1",
        "building the offline wheelhouse in /w (once per machine)",
        "building mlops/iris:v1-abc for models:/iris/1 from mlops-base:bookworm",
        "Step 1/2 : FROM mlops-base:bookworm",
        " ---> Running in 1234",
        " ---> 5678",
        "Removing intermediate container 1234",
        "Step 2/2 : COPY model /model",
        "Successfully built 9abc",
    ]
    with Steps(live=False) as steps:
        log = build_log(steps)
        for line in lines:
            log(line)
    assert capsys.readouterr().err.splitlines() == [
        line for line in lines if "Running in" not in line and "intermediate" not in line
    ]
    with Steps(live=False) as steps:
        log = build_log(steps, details=False)  # deploy: Docker's other output off a terminal
        for line in lines:
            log(line)
    assert capsys.readouterr().err.splitlines() == [
        lines[0],
        lines[1],
        lines[2],
        lines[3],
        lines[7],
    ]


def test_a_steps_notes_follow_its_finished_line_in_order() -> None:
    console, drawn = terminal()
    with Steps(live=True, console=console) as steps:
        steps.step("[1/6] training iris")
        steps.note("      run abc: accuracy 0.900 -> iris v1")
        steps.step("[2/6] training iris again")
        steps.note("      run def: accuracy 0.933 -> iris v2")
    lines = [ANSI.sub("", line).strip() for line in drawn.getvalue().splitlines()]
    kept = [line for line in lines if line.startswith(("[", "run "))]
    # The live display redraws; what stays is each step, then its own note.
    order = [
        line.split("  (")[0] for line in kept if line.endswith(" s)") or line.startswith("run")
    ]
    assert order[-4:] == [
        "[1/6] training iris",
        "run abc: accuracy 0.900 -> iris v1",
        "[2/6] training iris again",
        "run def: accuracy 0.933 -> iris v2",
    ]
