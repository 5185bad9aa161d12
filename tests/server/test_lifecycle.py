"""Readiness before the model loads, the admin API's guard, and an atomic reload."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import server.runtime
from server.app import create_app
from server.config import ServerConfig
from tests.server.conftest import wait_ready


def test_ready_is_503_until_the_model_is_loaded(
    iris_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_load = server.runtime.load

    def slow_load(*args: Any, **kwargs: Any) -> Any:
        gate.wait(30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(server.runtime, "load", slow_load)
    config = ServerConfig(model_ref=str(iris_model_dir), drift_interval=3600)
    with TestClient(create_app(config)) as client:
        assert client.get("/health").status_code == 200
        not_ready = client.get("/ready")
        assert not_ready.status_code == 503
        assert not_ready.json()["error"]["type"] == "not_ready"
        early = client.post("/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]})
        assert early.status_code == 503 and "still loading" in early.json()["error"]["message"]
        gate.set()
        wait_ready(client)
        assert client.post("/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200


def test_admin_reload_is_guarded_by_the_token(client: TestClient) -> None:
    assert client.post("/admin/reload").status_code == 401
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["error"]["type"] == "forbidden"
    basic = client.post("/admin/reload", headers={"Authorization": "Basic s3cret"})
    assert basic.status_code == 403
    ok = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["previous"]["version"] == ok.json()["current"]["version"] == "3"
    assert client.post("/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200


def test_admin_api_is_disabled_without_a_token(iris_model_dir: Path) -> None:
    config = ServerConfig(model_ref=str(iris_model_dir), drift_interval=3600, admin_token=None)
    with TestClient(create_app(config)) as client:
        wait_ready(client)
        response = client.post("/admin/reload", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 403
        assert response.json()["error"]["type"] == "admin_disabled"


def test_version_describes_the_baked_model(client: TestClient) -> None:
    info = client.get("/version").json()
    assert (info["name"], info["version"], info["run_id"]) == ("iris", "3", "abc123")
    assert info["drift"] == "enabled" and info["fast_path"] is True
    assert [c["name"] for c in info["signature"]["inputs"]][:2] == ["sepal_length", "sepal_width"]
    metrics = client.get("/metrics").text
    assert 'mlops_model_info{name="iris",run_id="abc123",version="3"} 1.0' in metrics


async def test_the_drift_loop_survives_a_failing_update(iris_model_dir: Path) -> None:
    import asyncio

    from server.metrics import ServerMetrics
    from server.runtime import Runtime

    config = ServerConfig(model_ref=str(iris_model_dir), drift_interval=0.02)
    runtime = Runtime(config, ServerMetrics())
    calls: list[int] = []

    async def flaky(*, force: bool = False) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a broken reference, say")

    runtime.update_drift = flaky  # type: ignore[method-assign]
    loop_task = asyncio.create_task(runtime._drift_loop())
    try:
        async with asyncio.timeout(30):  # a condition, not a time: three turns on a slow box
            while len(calls) <= 2:
                await asyncio.sleep(0.02)
    finally:
        loop_task.cancel()
    assert len(calls) > 2  # it went on after the first failure
