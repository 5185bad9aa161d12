"""A real MLflow model directory (iris RandomForest) and an in-process server over it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.config import ServerConfig

# The iris model fixture and its helpers live in tests/conftest.py (the monitoring tests serve it
# too); the names stay importable from here for the tests that import them.
from tests.conftest import FEATURES, ROOT, example_train_module, iris_frame

__all__ = ["FEATURES", "ROOT", "example_train_module", "iris_frame"]


def wait_ready(client: TestClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"server not ready: {client.get('/ready').json()}")


@pytest.fixture
def server_config(iris_model_dir: Path) -> ServerConfig:
    return ServerConfig(
        model_ref=str(iris_model_dir),
        drift_interval=3600,
        max_body_bytes=64_000,
        admin_token="s3cret",
    )


@pytest.fixture
def client(server_config: ServerConfig) -> Iterator[TestClient]:
    with TestClient(create_app(server_config), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="session")
def served_model(iris_model_dir: Path) -> Iterator[str]:
    """`python -m server` as a real process on a free port, serving the model directory."""

    from tests import services

    url, proc = services.start_model_server(
        str(iris_model_dir),
        iris_model_dir.parent / "server.log",
        timeout=60,
        MLOPS_ADMIN_TOKEN="s3cret",
    )
    try:
        yield url
    finally:
        services._stop(proc)
