"""Train: parameters from the form, the log streamed, then an offer to register."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.widgets import Input

from backends.errors import Unavailable
from console.modals.confirm import ConfirmModal
from console.modals.message import ErrorModal
from console.screens.runs import RunsScreen
from console.screens.train import TrainScreen
from tests.tui.fakes import FakeBackends
from tests.tui.helpers import wait_for_text, wait_until


async def test_train_streams_the_log_and_offers_to_register(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen), "train screen")
        text = await wait_for_text(pilot, "n_estimators (int)")
        assert "3 parameters from its MLproject" in text and "seed (int)" in text
        assert app.screen.query_one("#param-n_estimators", Input).has_focus
        # the defaults are filled in; only a changed value is passed to the run
        await pilot.press("tab", "backspace", "backspace", "3", "tab", "tab", *"iris", "ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "register offer")
        assert "abc123" in app.screen.body and "'iris'" in app.screen.body
        train_call = next(c for c in fake.calls if c[0] == "train")
        assert train_call[2] == {"seed": "3"}
        await pilot.press("y")
        await wait_for_text(pilot, "registered iris version 3")
        log = app.screen.query_one("#train-log")
        assert "run_id=abc123" in "\n".join(line.text for line in log.lines)


async def test_read_only_refuses_training(make_app: Any, fake: FakeBackends) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("t")
        await pilot.pause(0.1)
        assert isinstance(app.screen, RunsScreen)
        assert any("training is disabled" in n.message for n in app._notifications)


async def test_a_path_that_is_no_project_is_named_and_nothing_starts(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("t")
        await wait_for_text(pilot, "n_estimators (int)")
        project = app.screen.query_one("#train-project", Input)
        project.value = "/tmp/nowhere"
        project.focus()
        await pilot.press("enter")
        await wait_for_text(pilot, "/tmp/nowhere is not an MLflow Project")
        assert not app.screen.query(".param")  # the old form is gone with its project
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert not [c for c in fake.calls if c[0] == "train"]


async def test_a_required_parameter_left_empty_is_refused(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("t")
        await wait_for_text(pilot, "seed (int)")
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        screen.parameters = [replace(screen.parameters[0], default=None), *screen.parameters[1:]]
        screen.query_one("#param-n_estimators", Input).value = ""
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert any("n_estimators needs a value" in n.message for n in app._notifications)
        assert not [c for c in fake.calls if c[0] == "train"]


async def test_a_failed_training_opens_one_error_modal(make_app: Any, fake: FakeBackends) -> None:
    def broken(project: str, params: dict[str, str], on_line: Any) -> None:
        raise Unavailable("MLflow at http://x refused the connection", title="MLflow unreachable")

    fake.train = broken  # type: ignore[assignment,method-assign]
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("t")
        await wait_for_text(pilot, "parameters from its MLproject")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        await pilot.pause(0.2)
        assert sum(isinstance(s, ErrorModal) for s in app.screen_stack) == 1
        assert not app.screen_stack[-2].running  # the form can start again
