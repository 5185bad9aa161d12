"""Train: parameters from the form, the log streamed, then an offer to register."""

from __future__ import annotations

from typing import Any

import pytest

from console.modals.confirm import ConfirmModal
from console.screens.runs import RunsScreen
from console.screens.train import TrainScreen, parse_params
from tests.tui.fakes import FakeBackends
from tests.tui.helpers import wait_for_text, wait_until


def test_parse_params() -> None:
    assert parse_params(" n_estimators=200  seed=7 ") == {"n_estimators": "200", "seed": "7"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params("seed")


async def test_train_streams_the_log_and_offers_to_register(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen), "train screen")
        await pilot.press(*"seed=3", "tab", *"iris", "ctrl+s")
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
