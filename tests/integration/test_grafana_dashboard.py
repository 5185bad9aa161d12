"""deploy/grafana/mlops.json against a real Prometheus: every expression of every panel, with
the dashboard's variables filled in as Grafana fills them, returns data for a served model —
the latency, errors, batches, drift, labels, alerts and process series it draws exist under
the names and labels the panels ask for. (Grafana itself is not installed here; what it would
send to Prometheus is what is run.)"""

from __future__ import annotations

import json
import math
import runpy
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import services
from tests.conftest import FEATURES, ROOT, iris_frame
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

DASHBOARD = ROOT / "deploy" / "grafana" / "mlops.json"


def expressions() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in doc["panels"] for t in p["targets"]]


def test_the_dashboard_is_the_generators_output_and_well_formed() -> None:
    """The checked-in JSON is what scripts/grafana-dashboard.py writes (edit the script, run
    it), with unique panel ids and every panel on the chosen data source."""
    generator = runpy.run_path(str(ROOT / "scripts" / "grafana-dashboard.py"))
    assert DASHBOARD.read_text() == json.dumps(generator["dashboard"](), indent=2) + "\n"
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in doc["templating"]["list"]} == {"datasource", "deployment"}
    assert all(p["datasource"]["uid"] == "${datasource}" for p in doc["panels"])
    titles = " ".join(p["title"] for p in doc["panels"]).lower()
    for wanted in ("latency", "error", "batch", "drift", "accuracy", "alerts"):
        assert wanted in titles, wanted


@pytest.fixture
def served(tmp_path: Path, iris_model_dir: Path) -> Iterator[tuple[str, str]]:
    """A model server, scraped by the run's Prometheus as a deployment, under drifted traffic
    (the drift alert fires: the shipped rules with `for:` cut to 2 s), a few bad requests and
    labels coming back."""
    url, proc = services.start_model_server(
        str(iris_model_dir),
        tmp_path / "server.log",
        MLOPS_DRIFT_INTERVAL="0.5",
        MLOPS_DRIFT_WINDOW="150",
    )
    deployment = f"grafana-{uuid.uuid4().hex[:6]}"
    prom = services.shared_prometheus().for_another_user()
    labels = {"deployment": deployment, "model": "iris", "version": "3", "alias": "champion"}
    prom.set_targets([{"targets": [url.removeprefix("http://")], "labels": labels}])
    frame = iris_frame()
    drifted = frame[FEATURES].assign(petal_length=frame.petal_length + 3.0).values.tolist()
    truth = frame["target"].tolist()
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                for start in range(0, 40, 4):
                    answer = http.post(f"{url}/predict", json={"data": drifted[start : start + 4]})
                    if answer.status_code == 200:
                        body: dict[str, Any] = answer.json()
                        http.post(
                            f"{url}/feedback",
                            json=[
                                {
                                    "request_id": body["request_id"],
                                    "index": i,
                                    "truth": truth[start + i],
                                }
                                for i in range(4)
                            ],
                        )
                http.post(f"{url}/predict", json={"data": [["not a number", 1, 2, 3]]})  # a 4xx
                stop.wait(0.5)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        yield deployment, prom.url
    finally:
        stop.set()
        thread.join(timeout=30)
        prom.set_targets([])
        services._stop(proc)


def test_every_panel_finds_data_for_a_served_model(served: tuple[str, str]) -> None:
    deployment, prometheus = served

    def query(expr: str) -> list[dict[str, Any]]:
        # What Grafana sends: the variables filled in; $__rate_interval is at least four scrape
        # intervals (here 1 s scrapes: 1m is well over).
        filled = expr.replace("$deployment", deployment).replace("$__rate_interval", "1m")
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": filled}, timeout=30)
        assert answer.status_code == 200, f"{filled}: {answer.text}"
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return [s for s in result if s["metric"].get("deployment") == deployment]

    for title, expr in expressions():
        found = eventually(
            lambda expr=expr: query(expr),
            f"data for {deployment} from the panel {title!r}: {expr}",
            timeout=180,
        )
        # Numbers, not NaN: traffic flows all along, so every rate and quantile is defined.
        assert all(math.isfinite(float(s["value"][1])) for s in found), (title, found)
    firing = query('ALERTS{alertname="MlopsFeatureDrift", deployment="$deployment"}')
    assert firing, "the drift panel's alert never showed"
