"""Pilot tests drive MlopsApp with FakeBackends (as every capability) and short timers."""

from __future__ import annotations

from typing import Any

import pytest

from console.app import MlopsApp
from tests.tui.fakes import FakeAlerts, FakeBackends, services, settings


@pytest.fixture
def fake() -> FakeBackends:
    return FakeBackends()


@pytest.fixture
def fake_alerts() -> FakeAlerts:
    return FakeAlerts()


@pytest.fixture
def make_app(fake: FakeBackends, fake_alerts: FakeAlerts) -> Any:
    def make(
        start_mode: str = "runs", approval_interval: float = 30.0, **settings_overrides: object
    ) -> MlopsApp:
        return MlopsApp(
            settings(**settings_overrides),
            services=services(fake, fake_alerts),
            probe_interval=0.05,
            probe_delay=0,
            retry_base=0.05,
            retry_max=0.2,
            refresh_interval=0.1,
            start_mode=start_mode,
            approval_interval=approval_interval,
        )

    return make
