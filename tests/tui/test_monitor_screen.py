"""Monitor: rate, errors, latency quantiles and PSI per feature against its threshold."""

from __future__ import annotations

from typing import Any

from tests.tui.fakes import FakeBackends
from tests.tui.helpers import wait_for_text, wait_until


async def test_health_and_drift(make_app: Any, fake: FakeBackends) -> None:
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        text = await wait_for_text(pilot, "iris-prod")
        for expected in ("12.5", "1.00%", "4.0ms", "12.0ms", "30.0ms", "direct scrape"):
            assert expected in text, expected
        assert "petal_length" in text and "0.35" in text and "DRIFT" in text
        assert "alerts: not evaluated by this source" in text
        await wait_until(pilot, lambda: fake.calls.count(("monitor",)) >= 3, "refreshes")


async def test_metrics_down_then_recovers(make_app: Any, fake: FakeBackends) -> None:
    fake.down["metrics"] = 1
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "unreachable since")
        await wait_for_text(pilot, "iris-prod")
