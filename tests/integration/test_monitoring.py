"""Monitoring against the real thing: a Prometheus scraping a real `python -m server` under
generated traffic, with the shipped alert rules (their `for:` shortened to seconds)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from backends.prometheus.discovery import target_groups
from backends.prometheus.exposition import parse_exposition
from backends.prometheus.prometheus_source import PrometheusSource
from backends.prometheus.queries import Scope, bucket_quantile
from backends.prometheus.scrape_source import ScrapeSource
from backends.records import DeploymentHealth, ScrapeTarget
from console.cli.exit_codes import ExitCode
from console.cli.main import app
from tests import services
from tests.conftest import FEATURES, iris_frame
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

# The run's one Prometheus scrapes other tests' targets too: this module's names are its own.
SUFFIX = uuid.uuid4().hex[:6]
DEPLOYMENT = f"iris-test-{SUFFIX}"
MODEL = f"iris-{SUFFIX}"
WEIRD_DEPLOYMENT = f"weird-{SUFFIX}"
WEIRD = f'we"ird\\model\nname {{x="1"}} .* {SUFFIX}'  # a name that must neither break nor inject
runner = CliRunner()


def send(url: str, rows: list[list[float]], batch: int = 1) -> int:
    """POST rows to /predict, ``batch`` rows per request; the number of requests sent."""
    sent = 0
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(rows), batch):
            response = client.post(f"{url}/predict", json={"data": rows[i : i + batch]})
            assert response.status_code == 200, response.text
            sent += 1
    return sent


def iris_rows() -> list[list[float]]:
    return iris_frame()[FEATURES].to_numpy(dtype=float).tolist()


@pytest.fixture(scope="module")
def model_server(iris_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A model server of our own (its histogram holds only this module's traffic)."""
    log = tmp_path_factory.mktemp("monitored-server") / "server.log"
    # Drift every 0.5 s over the last 300 rows: a shift shows within a second.
    url, proc = services.start_model_server(
        str(iris_model_dir), log, MLOPS_DRIFT_INTERVAL="0.5", MLOPS_DRIFT_WINDOW="300"
    )
    try:
        yield url
    finally:
        services._stop(proc)


@pytest.fixture(scope="module")
def prom(model_server: str) -> Iterator[services.PrometheusServer]:
    """The run's Prometheus (the shipped rules, `for:` 2 s), finding this module's server
    through file_sd groups we generate."""
    server = services.shared_prometheus().for_another_user()
    try:
        # Create the request series before Prometheus' first look, so rate() sees every request.
        send(model_server, iris_rows()[:1])
        assert httpx.post(f"{model_server}/predict", json={"data": [[1.0]]}).status_code == 422
        server.set_targets(
            target_groups(
                [
                    ScrapeTarget(model_server, DEPLOYMENT, MODEL, 3, "champion"),
                    ScrapeTarget(model_server, WEIRD_DEPLOYMENT, WEIRD, 3, ""),
                ]
            )
        )
        source = PrometheusSource(server.url)
        mine = {DEPLOYMENT, WEIRD_DEPLOYMENT}
        eventually(
            lambda: (
                {
                    r.deployment: r.requests_total
                    for r in source.snapshot().rows
                    if r.deployment in mine
                }
                == {DEPLOYMENT: 2.0, WEIRD_DEPLOYMENT: 2.0}
            ),
            "both targets scraped",
        )
        yield server
    finally:
        server.targets_path.unlink(missing_ok=True)


def row_of(rows: tuple[DeploymentHealth, ...], deployment: str = DEPLOYMENT) -> DeploymentHealth:
    (row,) = [r for r in rows if r.deployment == deployment]
    return row


def server_total(url: str) -> float:
    exposition = parse_exposition(httpx.get(f"{url}/metrics").text)
    return sum(v for _, v in exposition.values("mlops_requests_total"))


def test_p99_matches_the_servers_histogram_within_a_bucket(
    prom: services.PrometheusServer, model_server: str
) -> None:
    rows = iris_rows()
    send(model_server, rows * 2)  # single rows: ~1-5 ms each
    send(model_server, rows * 4, batch=60)  # bigger batches: slower answers, a real tail
    total = server_total(model_server)
    source = PrometheusSource(prom.url, window="10m")  # a window covering the server's life
    eventually(
        lambda: row_of(source.snapshot(Scope(deployment=DEPLOYMENT)).rows).requests_total == total,
        "Prometheus to scrape all requests",
    )
    time.sleep(1.5)  # one more scrape after the last request, so rate() ends on it
    p99 = row_of(source.snapshot(Scope(deployment=DEPLOYMENT)).rows).latency.p99

    # The reference: the same quantile over the server's own cumulative histogram.
    exposition = parse_exposition(httpx.get(f"{model_server}/metrics").text)
    buckets: dict[float, float] = {}
    for labels, value in exposition.values("mlops_request_duration_seconds_bucket"):
        buckets[float(labels["le"])] = buckets.get(float(labels["le"]), 0.0) + value
    reference = bucket_quantile(0.99, sorted(buckets.items()))
    assert p99 is not None and reference is not None
    bounds = sorted(buckets)
    upper = next(b for b in bounds if reference <= b)
    lower = max([0.0] + [b for b in bounds if b < upper])
    assert abs(p99 - reference) <= upper - lower, (p99, reference, (lower, upper))


def test_direct_scrape_agrees_with_prometheus_on_request_counts(
    prom: services.PrometheusServer, model_server: str
) -> None:
    target = ScrapeTarget(model_server, DEPLOYMENT, MODEL, 3, "champion")
    scrape = ScrapeSource([target], interval=0.5)
    before = row_of(scrape.snapshot().rows).requests_total
    sent = send(model_server, iris_rows()[:40])
    for _ in range(5):
        httpx.post(f"{model_server}/predict", json={"data": [[1.0, 2.0]]})  # 422s count too
    scraped = row_of(scrape.snapshot().rows)
    assert before is not None and scraped.requests_total == before + sent + 5
    prometheus = PrometheusSource(prom.url, window="10s")
    seen = eventually(
        lambda: (
            row_of(prometheus.snapshot().rows)
            if row_of(prometheus.snapshot().rows).requests_total == scraped.requests_total
            else None
        ),
        "Prometheus' count to catch up",
    )
    assert seen.requests_total == scraped.requests_total
    assert (seen.model, seen.version, seen.alias) == (scraped.model, scraped.version, scraped.alias)
    # Per model version too: the MODEL/3 row sums exactly the one deployment of it.
    (by_version,) = [r for r in prometheus.snapshot(per="version").rows if r.model == MODEL]
    (scraped_version,) = scrape.snapshot(per="version").rows
    assert by_version.requests_total == scraped_version.requests_total == scraped.requests_total

    # And over time, for plots: the request rate, a point a second. Requests sent while
    # Prometheus watches the series (the ones above may all predate its first scrape of this
    # server, when the module's tests ran in another order), until a scrape has seen them.
    def rising() -> Any:
        send(model_server, iris_rows()[:5])
        (series,) = prometheus.history(
            "request_rate", Scope(deployment=DEPLOYMENT), minutes=2, step="1s"
        )
        return series if series.points and max(v for _, v in series.points) > 0 else None

    series = eventually(rising, "a request rate above 0 in Prometheus' history")
    assert series.labels["deployment"] == DEPLOYMENT
    assert series.points and max(v for _, v in series.points) > 0


def test_the_consoles_plots_get_every_figure_from_range_queries(
    prom: services.PrometheusServer, model_server: str
) -> None:
    from backends.prometheus.history import FIGURES, prometheus_history

    source = PrometheusSource(prom.url, window="10s")
    send(model_server, iris_rows()[:60])
    # Labels for ten rows: the accuracy figure has points too.
    answer = httpx.post(f"{model_server}/predict", json={"data": iris_rows()[:10]}).json()
    truth = iris_frame()["target"].tolist()[:10]
    labels = [
        {"request_id": answer["request_id"], "index": i, "truth": t} for i, t in enumerate(truth)
    ]
    assert httpx.post(f"{model_server}/feedback", json=labels).json()["accepted"] == 10

    def history() -> Any:
        found = prometheus_history(source, DEPLOYMENT, minutes=2)
        return found if all(found.points(f) for f in FIGURES) else None

    found = eventually(history, "a point of every figure")
    assert found.deployment == DEPLOYMENT and found.source == "prometheus range query"
    times = [t for t, _ in found.points("request_rate")]
    assert times == sorted(times) and found.end.timestamp() - times[0] <= 120 + 1
    assert max(v for _, v in found.points("request_rate")) > 0
    assert all(v == 0 for _, v in found.points("error_ratio"))  # only 200s and 422s were sent
    p50, p99 = dict(found.points("p50")), dict(found.points("p99"))
    assert all(p50[t] <= p99[t] for t in p50.keys() & p99.keys())
    assert all(0 <= v <= 1 for _, v in found.points("accuracy"))


def test_shifted_inputs_raise_the_drift_gauge_and_fire_the_drift_alert(
    prom: services.PrometheusServer, model_server: str
) -> None:
    source = PrometheusSource(prom.url, window="10s")
    scope = Scope(deployment=DEPLOYMENT)
    rows = iris_rows()
    send(model_server, rows * 2, batch=30)  # 300 rows: the window holds the training data itself

    def psi_of(feature: str) -> float | None:
        drift = {d.feature: d for d in row_of(source.snapshot(scope).rows).drift}
        return drift[feature].psi if feature in drift else None

    def settled() -> bool:
        psi = psi_of("petal_length")
        return psi is not None and psi < 0.05

    eventually(settled, "PSI of unshifted inputs near 0")
    # An alert that earlier (shifted) inputs of this shared server left pending ends at the
    # first rule evaluation that sees the low PSI, a moment after the query does.
    eventually(
        lambda: not [a for a in source.alerts(scope) if a.name == "MlopsFeatureDrift"],
        "no drift alert while the inputs are unshifted",
    )

    shifted = [[a, b, c + 4.0, d] for a, b, c, d in rows]  # petal_length moves 4 cm
    send(model_server, shifted * 2 + shifted[:100], batch=20)  # 400 rows: the whole window

    eventually(lambda: (psi_of("petal_length") or 0.0) > 0.2, "the drift gauge to rise")
    row = row_of(source.snapshot(scope).rows)
    worst = row.worst_drift
    assert worst is not None and worst.feature == "petal_length" and worst.drifted
    assert {d.feature for d in row.drift if d.drifted} == {"petal_length"}

    def firing() -> list[Any]:
        return [
            a for a in source.alerts(scope) if a.name == "MlopsFeatureDrift" and a.state == "firing"
        ]

    (alert,) = eventually(firing, "MlopsFeatureDrift to fire")
    assert alert.labels["feature"] == "petal_length" and alert.severity == "warning"
    assert alert.labels["model"] == MODEL and alert.labels["version"] == "3"
    assert alert.active_since is not None

    # The operator's view says the same: the row is marked, the alert listed under the table.
    result = runner.invoke(
        app, ["monitor", DEPLOYMENT], env={"PROMETHEUS_URL": prom.url, "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert f"source: prometheus {prom.url}" in result.output
    assert "DRIFT" in result.output and "FIRING   MlopsFeatureDrift" in result.output
    doc = json.loads(
        runner.invoke(
            app, ["monitor", DEPLOYMENT, "--json"], env={"PROMETHEUS_URL": prom.url}
        ).output
    )
    assert [r["deployment"] for r in doc["rows"]] == [DEPLOYMENT]
    assert any(a["name"] == "MlopsFeatureDrift" for a in doc["rows"][0]["alerts"])


def test_label_values_with_quotes_backslashes_and_newlines_are_matched_not_injected(
    prom: services.PrometheusServer,
) -> None:
    source = PrometheusSource(prom.url)
    weird = eventually(lambda: source.snapshot(Scope(model=WEIRD)).rows, "the weird target")
    assert [(r.deployment, r.model) for r in weird] == [(WEIRD_DEPLOYMENT, WEIRD)]
    # An injection attempt is one odd value, not more PromQL: it matches nothing, breaks nothing.
    for attempt in ('iris"} or up{job="prometheus', 'iris\\", x="', ".*", "iris\n"):
        assert source.snapshot(Scope(model=attempt)).rows == ()
        assert source.alerts(Scope(model=attempt)) == ()


def test_mlops_monitor_target_reads_a_server_directly(model_server: str) -> None:
    send(model_server, iris_rows()[:1])  # a request of its own: no other test's traffic
    result = runner.invoke(
        app,
        ["monitor", "--target", model_server, "--interval", "0.5"],
        env={"PROMETHEUS_URL": "", "COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    assert "source: direct scrape" in result.output and "iris/3" in result.output
    doc = json.loads(
        runner.invoke(
            app,
            ["monitor", "-t", model_server, "--json", "--interval", "0.5"],
            env={"PROMETHEUS_URL": ""},
        ).output
    )
    (row,) = doc["rows"]
    assert row["model"] == "iris" and row["up"] and row["requests_total"] >= 1
    assert doc["source"] == "direct scrape" and doc["alerts"] is None


def test_prometheus_down_exits_3_with_a_clear_message(tmp_path: Path) -> None:
    stopped = services.start_prometheus(tmp_path)
    assert httpx.get(f"{stopped.url}/-/ready").status_code == 200
    services.stop(stopped)
    for args in (["monitor"], ["monitor", "--json"], ["monitor", "--watch"]):
        result = runner.invoke(app, args, env={"PROMETHEUS_URL": stopped.url})
        assert result.exit_code == ExitCode.UNREACHABLE, (args, result.output)
        assert (
            f"Prometheus unreachable: Prometheus at {stopped.url} is unreachable" in result.output
        )


def test_labels_sent_back_show_as_accuracy_in_prometheus_and_mlops_monitor(
    prom: services.PrometheusServer, model_server: str
) -> None:
    """predict → POST /feedback → the server's gauge → Prometheus → `mlops monitor --json`."""
    rows = iris_rows()[:40]
    truth = iris_frame()["target"].tolist()[:40]
    answer = httpx.post(f"{model_server}/predict", json={"data": rows}, timeout=30).json()
    labels = [
        {"request_id": answer["request_id"], "index": i, "truth": t} for i, t in enumerate(truth)
    ]
    report = httpx.post(f"{model_server}/feedback", json=labels, timeout=30).json()
    assert report["accepted"] == 40, report
    # The server's window holds every label this module sent: its own figure is the truth.
    own = {
        s.labels["metric"]: s.value
        for family in text_string_to_metric_families(
            httpx.get(f"{model_server}/metrics", timeout=30).text
        )
        for s in family.samples
        if s.name == "mlops_model_quality"
    }
    rows_labelled = next(
        s.value
        for family in text_string_to_metric_families(
            httpx.get(f"{model_server}/metrics", timeout=30).text
        )
        for s in family.samples
        if s.name == "mlops_model_quality_rows"
    )
    assert rows_labelled >= 40

    source = PrometheusSource(prom.url, window="10s")
    scope = Scope(deployment=DEPLOYMENT)
    row = eventually(
        lambda: next(
            # The first scrape after these labels (an earlier one holds fewer rows).
            (r for r in source.snapshot(scope).rows if r.labelled_rows == rows_labelled),
            None,
        ),
        "the accuracy from labels in Prometheus",
    )
    assert row.quality["accuracy"] == pytest.approx(own["accuracy"])
    assert row.labelled_rows == rows_labelled and row.label_coverage is not None
    result = runner.invoke(app, ["monitor", DEPLOYMENT, "--json"], env={"PROMETHEUS_URL": prom.url})
    assert result.exit_code == 0, result.output
    (shown,) = json.loads(result.output)["rows"]
    assert shown["quality"]["accuracy"] == pytest.approx(own["accuracy"])
    assert shown["quality"]["f1_macro"] == pytest.approx(own["f1_macro"])
    assert shown["labelled_rows"] == rows_labelled
