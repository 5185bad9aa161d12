"""The fixtures themselves: each real service really answers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import services

pytestmark = pytest.mark.integration


@pytest.mark.mlflow_server
def test_mlflow_server_stores_runs_and_proxies_artifacts(
    tracking_uri: str, experiment_name: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp_id = client.create_experiment(experiment_name)
    run = client.create_run(exp_id)
    client.log_metric(run.info.run_id, "answer", 42.0)
    note = tmp_path / "note.txt"
    note.write_text("hello")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    fetched = client.get_run(run.info.run_id)
    assert fetched.data.metrics == {"answer": 42.0}
    assert fetched.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["note.txt"]
    # Artifacts go through the server's proxy, not a path the client could write itself.
    assert fetched.info.artifact_uri.startswith("mlflow-artifacts:")
    assert httpx.get(f"{tracking_uri}/health", timeout=5).text.strip() == "OK"


@pytest.mark.docker
def test_docker_engine_runs_the_local_base_image(docker_client: Any, base_image: str) -> None:
    assert docker_client.version()["ApiVersion"]
    out = docker_client.containers.run(
        base_image,
        ["python3", "-c", "import sys, venv; print(6 * 7, sys.version_info[:2])"],
        remove=True,
        network_disabled=True,
    )
    assert out.decode().strip() == "42 (3, 11)"


@pytest.mark.prometheus
def test_prometheus_scrapes_itself_and_file_sd_targets(
    prometheus: services.PrometheusServer,
) -> None:
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    Counter("fixture_probe", "a counter the test exposes", registry=registry).inc(3)
    port = services.free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus.set_targets([{"targets": [f"127.0.0.1:{port}"], "labels": {"model": "probe"}}])
        value = _wait_for_sample(prometheus.url, 'fixture_probe_total{model="probe"}')
        assert value == 3.0
        assert _wait_for_sample(prometheus.url, 'up{job="prometheus"}') == 1.0
    finally:
        prometheus.set_targets([])
        server.shutdown()
        thread.join(timeout=5)


def _wait_for_sample(url: str, query: str, timeout: float = 30) -> float:
    from prometheus_api_client import PrometheusConnect

    prom = PrometheusConnect(url=url, disable_ssl=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = prom.custom_query(query)
        if result:
            return float(result[0]["value"][1])
        time.sleep(0.5)
    raise AssertionError(f"Prometheus at {url} returned nothing for {query} in {timeout}s")
