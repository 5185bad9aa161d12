"""Each screen at a fixed 100x30, against fakes (update with `pytest --snapshot-update`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from console.app import MlopsApp
from tests.tui.fakes import FakeBackends, deployment, settings
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
        backends=fake,
        probe_interval=3600,
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
        await pilot.pause()

    return run_before


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
    assert snap_compare(app, terminal_size=SIZE, run_before=ready("petal_length"))
