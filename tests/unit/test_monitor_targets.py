"""MLOPS_MONITOR_TARGETS: model servers outside Docker the Monitor scrapes too, by address,
and with no Docker engine at all (the end-to-end run is tests/e2e/test_demo_without_docker.py)."""

from __future__ import annotations

from typing import Any

import pytest

from backends.errors import Unavailable
from console.config import Settings
from console.services.monitoring import MetricsMonitoring, settings_targets


def test_entries_are_urls_or_named_urls() -> None:
    found = settings_targets(
        (
            "http://127.0.0.1:8080/",
            "quickstart=http://127.0.0.1:9000/metrics",
            "127.0.0.1:7000",
            "localhost:8080/metrics?a=b",  # a query's "=" is no name
        )
    )
    assert [(t.deployment, t.url) for t in found] == [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("quickstart", "http://127.0.0.1:9000"),
        ("127.0.0.1:7000", "http://127.0.0.1:7000"),
        ("localhost:8080", "http://localhost:8080/metrics?a=b"),
    ]


class NoDocker:
    def __init__(self, targets: tuple[str, ...]) -> None:
        self.settings = Settings(
            tracking_uri="sqlite:///x.db",
            docker_host="unix:///nonexistent.sock",
            prometheus_url=None,
            context="t",
            monitor_targets=targets,
        )

    def docker(self) -> Any:
        raise Unavailable("Docker engine at unix:///nonexistent.sock is not reachable")

    def handles(self) -> Any:
        from backends.lifecycle.handles import Handles

        return Handles(self.settings.tracking_uri, self.settings.docker_host, docker_timeout=5)


def test_named_servers_need_no_docker_and_without_them_docker_is_said_down() -> None:
    monitoring = MetricsMonitoring(NoDocker(("quickstart=http://127.0.0.1:8080",)))  # type: ignore[arg-type]
    (target,) = monitoring._scrape_targets()
    assert (target.deployment, target.url) == ("quickstart", "http://127.0.0.1:8080")
    with pytest.raises(Unavailable, match="not reachable"):
        MetricsMonitoring(NoDocker(()))._scrape_targets()  # type: ignore[arg-type]


def test_the_variable_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_MONITOR_TARGETS", " a=http://h:1 , http://h:2 ,, ")
    assert Settings.from_env().monitor_targets == ("a=http://h:1", "http://h:2")
