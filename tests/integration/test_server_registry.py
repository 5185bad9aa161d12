"""`python -m server` serving registry models from a real `mlflow server`."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import services
from tests.models import log_version
from tests.server.conftest import FEATURES, iris_frame

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "integration-token"


@dataclass
class Registered:
    name: str
    run_ids: dict[str, str]  # version -> run id


@pytest.fixture(scope="module")
def registered(
    mlflow_server: services.MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registered]:
    import mlflow
    from mlflow.tracking import MlflowClient

    # For this module's tests only: the variable goes with the module (a later test's
    # subprocess or tmux console must not find this server by accident).
    environment = pytest.MonkeyPatch()
    environment.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    name = f"iris-serve-{os.getpid()}"
    exp = client.create_experiment(name)
    tmp = tmp_path_factory.mktemp("versions")
    v1, run1 = log_version(exp, name, 1, True, tmp)
    v2, run2 = log_version(exp, name, 2, False, tmp)
    client.set_registered_model_alias(name, "champion", v1)
    yield Registered(name, {v1: run1, v2: run2})
    environment.undo()


@pytest.fixture(scope="module")
def server(
    registered: Registered,
    mlflow_server: services.MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    url, proc = services.start_model_server(
        f"{registered.name}@champion",
        tmp_path_factory.mktemp("server") / "server.log",
        MLFLOW_TRACKING_URI=mlflow_server.url,
        MLOPS_ADMIN_TOKEN=TOKEN,
        MLOPS_DRIFT_INTERVAL="0.3",
        MLOPS_DRIFT_WINDOW="200",
    )
    try:
        yield url, proc
    finally:
        services._stop(proc)


def gauge(url: str, metric: str, feature: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == metric and sample.labels.get("feature") == feature:
                return float(sample.value)
    return None


def test_version_and_predictions_match_the_registry_model(
    server: tuple[str, Any], registered: Registered
) -> None:
    import mlflow.pyfunc

    url, _ = server
    info = httpx.get(f"{url}/version").json()
    assert (info["name"], info["version"], info["alias"]) == (registered.name, "1", "champion")
    assert info["run_id"] == registered.run_ids["1"]
    assert [c["name"] for c in info["signature"]["inputs"]] == FEATURES
    assert info["drift"] == "enabled"

    frame = iris_frame()[FEATURES]
    expected = mlflow.pyfunc.load_model(f"models:/{registered.name}/1").predict(frame).tolist()
    got = httpx.post(f"{url}/predict", json={"data": frame.values.tolist()}).json()
    assert got["predictions"] == expected and got["model"]["version"] == "1"
    records = httpx.post(
        f"{url}/invocations", json={"dataframe_records": frame.to_dict(orient="records")}
    ).json()
    assert records["predictions"] == expected


def test_drift_gauges_stay_low_in_distribution_and_rise_when_shifted(
    server: tuple[str, Any],
) -> None:
    url, _ = server
    frame = iris_frame()[FEATURES].sample(n=200, replace=True, random_state=3)
    for row in frame.values.tolist():  # single-row traffic, as clients send it
        assert httpx.post(f"{url}/predict", json={"data": [row]}).status_code == 200
    psi_calm = _wait_gauge(url, "mlops_feature_psi", "petal_length", lambda v: v is not None)
    assert psi_calm < 0.2, psi_calm
    shifted = frame.assign(petal_length=frame.petal_length + 3.0)
    for start in range(0, 200, 10):
        chunk = shifted.values[start : start + 10].tolist()
        assert httpx.post(f"{url}/predict", json={"data": chunk}).status_code == 200
    # The window (200 rows) now holds only shifted rows; wait for the timer to publish that.
    psi_shifted = _wait_gauge(url, "mlops_feature_psi", "petal_length", lambda v: v and v > 1.0)
    assert psi_shifted > 1.0
    _wait_gauge(url, "mlops_feature_ks", "petal_length", lambda v: v and v > 0.5)
    assert gauge(url, "mlops_feature_ks_pvalue", "petal_length") < 0.05
    assert gauge(url, "mlops_feature_psi", "sepal_width") < 0.2  # untouched feature stays calm


def _wait_gauge(url: str, metric: str, feature: str, ok: Any, timeout: float = 10) -> float:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = gauge(url, metric, feature)
        if ok(value):
            return float(value)  # type: ignore[arg-type]
        time.sleep(0.2)
    raise AssertionError(f"{metric}{{feature={feature}}} = {value}")


def test_admin_reload_swaps_versions_without_failed_requests(
    server: tuple[str, Any], registered: Registered, mlflow_server: services.MlflowServer
) -> None:
    from mlflow.tracking import MlflowClient

    url, _ = server
    assert httpx.post(f"{url}/admin/reload").status_code == 401
    wrong = httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["error"]["type"] == "forbidden"

    statuses: list[int] = []
    per_client: list[list[str]] = [[] for _ in range(4)]
    stop = threading.Event()

    def steady_load(versions: list[str]) -> None:
        # One client sends its next request only after the last answer: once it has been
        # answered by the new model, it must never be answered by the old one again. (Across
        # clients answers may interleave: a request already on the old model finishes there.)
        with httpx.Client() as http:
            while not stop.is_set():
                r = http.post(f"{url}/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model"]["version"])

    client = MlflowClient(mlflow_server.url)
    client.set_registered_model_alias(registered.name, "champion", "2")
    threads = [threading.Thread(target=steady_load, args=(v,)) for v in per_client]
    for t in threads:
        t.start()
    time.sleep(0.5)
    reload = httpx.post(
        f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    client.set_registered_model_alias(registered.name, "champion", "1")

    assert reload.status_code == 200, reload.text
    assert reload.json()["previous"]["version"] == "1"
    assert reload.json()["current"]["version"] == "2"
    assert statuses and set(statuses) == {200}
    for versions in per_client:
        assert versions[0] == "1" and versions[-1] == "2"
        assert versions == sorted(versions)  # never back to the old one after the swap
    info = httpx.get(f"{url}/version").json()
    assert info["drift"].startswith("unavailable")  # version 2 logged no reference
    assert httpx.post(f"{url}/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 200


def test_sigterm_drains_in_flight_requests(
    registered: Registered, mlflow_server: services.MlflowServer, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    url, proc = services.start_model_server(
        f"{registered.name}/1", log, MLFLOW_TRACKING_URI=mlflow_server.url
    )
    rows = iris_frame()[FEATURES].values.tolist() * 200  # 30,000 rows: a request that takes a while
    outcome: dict[str, Any] = {}

    def big_request() -> None:
        outcome["response"] = httpx.post(f"{url}/predict", json={"data": rows}, timeout=60)

    # SIGTERM once the server holds the request (a fixed pause was sometimes too short on a
    # loaded machine: the signal came before the request, which was then refused). The server
    # may answer /metrics only after the request it computes (ci11, loaded: never seen in
    # flight): then the request is sent again, until one is seen in flight.
    deadline = time.monotonic() + 120
    seen = False
    while not seen:
        assert time.monotonic() < deadline, "no request was ever seen in flight"
        worker = threading.Thread(target=big_request)
        worker.start()
        while worker.is_alive():
            if "mlops_requests_in_flight 1.0" in httpx.get(f"{url}/metrics").text:
                seen = worker.is_alive()
                break
            time.sleep(0.01)
        if not seen:
            worker.join()
            assert outcome["response"].status_code == 200, outcome
    proc.send_signal(signal.SIGTERM)
    worker.join(60)
    # uvicorn re-raises the signal after its graceful shutdown, so -SIGTERM is a clean exit.
    assert proc.wait(30) in (0, -signal.SIGTERM)
    assert "Traceback" not in log.read_text()
    response = outcome["response"]
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(rows)
