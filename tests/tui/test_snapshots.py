"""Each screen at a fixed 100x30, against fakes (update with `pytest --snapshot-update`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from console.app import MlopsApp
from tests.tui.fakes import FakeBackends, deployment, services, settings
from tests.tui.helpers import wait_for_text, wait_until

SIZE = (100, 30)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times are shown in local time: pin it, so the snapshots hold in any time zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def snapshot_app(mode: str, fake: FakeBackends, **overrides: object) -> MlopsApp:
    return MlopsApp(
        settings(**overrides),
        services=services(fake),
        probe_interval=3600,
        probe_delay=0,
        refresh_interval=3600,
        start_mode=mode,
        show_clock=False,
    )


def ready(text: str) -> Any:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await wait_until(
            pilot, lambda: all(s.reachable for s in app.backend_status.values()), "probes"
        )
        await wait_for_text(pilot, text)
        # Every one-shot worker done too (the monitor's history beside its thresholds, the
        # runs screen's experiments beside its rows): a loaded box ends them later than the
        # text awaited. The probes and the approvals watch loop for ever, so they are not.
        await wait_until(
            pilot,
            lambda: not [w for w in app.workers if w.is_running and w.group not in FOREVER_GROUPS],
            "the screen's workers done",
        )
        await pilot.pause()

    return run_before


FOREVER_GROUPS = ("probes", "approvals")


def test_runs_snapshot(snap_compare: Any) -> None:
    app = snapshot_app("runs", FakeBackends())
    assert snap_compare(app, terminal_size=SIZE, run_before=ready("3 runs"))


def test_models_snapshot_read_only_production(snap_compare: Any) -> None:
    app = snapshot_app("models", FakeBackends(), context="prod", read_only=True)
    assert snap_compare(app, terminal_size=SIZE, run_before=ready("0.92"))


def test_deployments_snapshot(snap_compare: Any) -> None:
    fake = FakeBackends(deployments=[deployment()])
    fake.deployments = [d.__class__(**{**d.__dict__, "started_at": None}) for d in fake.deployments]
    app = snapshot_app("deploy", fake)
    assert snap_compare(app, terminal_size=SIZE, run_before=ready("iris-prod"))


def test_monitor_snapshot(snap_compare: Any) -> None:
    app = snapshot_app("monitor", FakeBackends())
    # The threshold's source shows once the drift reference is read: thresholds, plots and the
    # retraining offer are all in by then.
    ready_text = "drift_reference.json of run r"
    assert snap_compare(app, terminal_size=SIZE, run_before=ready(ready_text))


def test_compare_snapshot(snap_compare: Any) -> None:
    async def compare_two(pilot: Any) -> None:
        await ready("3 runs")(pilot)
        await pilot.press("space", "space", "c")
        await wait_for_text(pilot, "same data")
        await pilot.pause()

    app = snapshot_app("runs", FakeBackends())
    assert snap_compare(app, terminal_size=SIZE, run_before=compare_two)


def test_train_form_snapshot(snap_compare: Any) -> None:
    async def open_form(pilot: Any) -> None:
        from textual.widgets import Input

        await ready("3 runs")(pilot)
        await pilot.press("t")
        await wait_for_text(pilot, "parameters from its MLproject")
        # The focused field's cursor blinks: held on, the picture does not depend on the
        # moment it is taken (a loaded machine took it with the cursor off).
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False
        await pilot.pause()

    app = snapshot_app("runs", FakeBackends())
    assert snap_compare(app, terminal_size=SIZE, run_before=open_form)


def test_runs_in_a_plain_80x24_monochrome_terminal(
    snap_compare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_COLOR (no-color.org) is how a monochrome terminal is asked for: every state must
    still read in text (marks, sort arrows, the status bar's words)."""
    monkeypatch.setenv("NO_COLOR", "1")
    app = snapshot_app("runs", FakeBackends(), context="prod")
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready("3 runs"))
