from __future__ import annotations

import pytest

from console.config import DEFAULT_TRACKING_URI, Settings


def test_defaults_are_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MLFLOW_TRACKING_URI", "DOCKER_HOST", "PROMETHEUS_URL", "MLOPS_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    s = Settings.from_env()
    assert s.tracking_uri == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    assert s.docker_host is None and s.prometheus_url is None
    assert s.context == "local" and s.metrics_source == "direct scrape"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("DOCKER_HOST", "ssh://ops@box")
    monkeypatch.setenv("PROMETHEUS_URL", "http://prom:9090")
    monkeypatch.setenv("MLOPS_CONTEXT", "prod")
    s = Settings.from_env(read_only=True)
    assert (s.tracking_uri, s.docker_host, s.context, s.read_only) == (
        "http://mlflow:5000",
        "ssh://ops@box",
        "prod",
        True,
    )
    assert s.metrics_source == "prometheus http://prom:9090"
    assert Settings.from_env(context="dev").context == "dev"
