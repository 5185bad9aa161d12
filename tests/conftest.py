"""Shared fixtures. The real-service ones live in tests/services.py (see its docstring)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests import services

# Child processes (mlflow run, the example's `python train.py`) must find this venv's python.
os.environ["PATH"] = services.VENV_BIN + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.MlflowServer]:
    """One real `mlflow server` process for the whole session (it takes ~20 s to start)."""
    server = services.start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield from services.session_fixture_iter(server)


@pytest.fixture
def tracking_uri(mlflow_server: services.MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point MLflow (in this process and in children) at the session's server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    return mlflow_server.url


@pytest.fixture
def experiment_name() -> str:
    """A fresh experiment name, so tests sharing the server never see each other's runs."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A Docker SDK client for the real engine."""
    client = services.docker_client_or_skip()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The local base image built by scripts/build-base-image.sh (no registry here)."""
    import docker.errors

    try:
        docker_client.images.get(services.BASE_IMAGE)
    except docker.errors.ImageNotFound:
        services.service_missing(
            f"base image {services.BASE_IMAGE} is missing: run scripts/build-base-image.sh"
        )
    return services.BASE_IMAGE


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.PrometheusServer]:
    """A real Prometheus with a generated config (self-scrape + a file_sd job)."""
    server = services.start_prometheus(tmp_path_factory.mktemp("prometheus"))
    yield from services.session_fixture_iter(server)
