"""The two metrics sources without a network: the direct scrape over httpx.MockTransport (real
expositions from the server's own metrics), and PrometheusSource over a fake query client."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from backends.errors import InvalidInput, Unavailable
from backends.prometheus.exposition import parse_exposition
from backends.prometheus.prometheus_source import PrometheusSource, connect_prometheus
from backends.prometheus.queries import Scope, bucket_quantile
from backends.prometheus.scrape_source import ScrapeSource
from backends.records import ScrapeTarget
from server.metrics import LATENCY_BUCKETS, ServerMetrics


def page(metrics: ServerMetrics) -> str:
    return generate_latest(metrics.registry).decode()


def answer(metrics: ServerMetrics, seconds: list[float], status: str = "200") -> None:
    for s in seconds:
        metrics.request_duration.labels(endpoint="predict", status=status).observe(s)
        metrics.requests.labels(endpoint="predict", status=status).inc()
    if status == "200":
        metrics.batch_size.observe(len(seconds))


class Pages:
    """A MockTransport handler: each host answers its next page (or raises) on each GET."""

    def __init__(self, pages: dict[str, list[str | Exception]]) -> None:
        self.pages = pages
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = f"{request.url.host}:{request.url.port}"
        self.asked.append(host)
        assert request.url.path == "/metrics"
        item = self.pages[host].pop(0)
        if isinstance(item, Exception):
            raise item
        return httpx.Response(200, text=item)


def scrape_source(
    targets: list[ScrapeTarget], pages: Pages, times: list[float] | None = None
) -> tuple[ScrapeSource, list[float]]:
    clock = iter(times or [float(i) for i in range(100)])
    slept: list[float] = []
    source = ScrapeSource(
        targets,
        client=httpx.Client(transport=httpx.MockTransport(pages)),
        interval=2.0,
        sleep=slept.append,
        clock=lambda: next(clock),
    )
    return source, slept


def test_parse_exposition_marks_counters_and_histograms_monotonic() -> None:
    m = ServerMetrics()
    answer(m, [0.003])
    m.feature_psi.labels(feature="f").set(0.3)
    exp = parse_exposition(page(m))
    requests = ("mlops_requests_total", (("endpoint", "predict"), ("status", "200")))
    assert exp.samples[requests] == 1.0 and requests in exp.monotonic
    psi = ("mlops_feature_psi", (("feature", "f"),))
    assert exp.samples[psi] == 0.3 and psi not in exp.monotonic
    assert not any(name.endswith("_created") for name, _ in exp.monotonic)
    with pytest.raises(InvalidInput):
        parse_exposition("this is { not metrics")


def test_scrape_diff_gives_rates_ratios_and_quantiles_of_the_interval_only() -> None:
    m = ServerMetrics()
    m.set_model("iris", "3", "run1")
    answer(m, [5.0] * 50)  # before the first scrape: slow, must not count
    first = page(m)
    between = [0.002] * 90 + [0.02] * 9 + [0.2]  # the interval's 100 requests
    answer(m, between)
    answer(m, [0.001] * 10, status="503")
    answer(m, [0.001] * 10, status="422")
    m.feature_psi.labels(feature="petal_length").set(0.45)
    m.feature_ks_pvalue.labels(feature="petal_length").set(0.001)
    m.feature_psi.labels(feature="sepal_width").set(0.01)
    m.feature_ks_pvalue.labels(feature="sepal_width").set(0.6)
    m.drift_window_rows.set(300)
    second = page(m)
    pages = Pages({"h:1": [first, second]})
    target = ScrapeTarget("http://h:1", deployment="web", model="iris", version=3, alias="champ")
    source, slept = scrape_source([target], pages, times=[10.0, 14.0])

    snap = source.snapshot()

    assert slept == [2.0] and pages.asked == ["h:1", "h:1"]
    assert snap.source == "direct scrape" and snap.alerts is None
    assert snap.window_seconds == 4.0
    (row,) = snap.rows
    assert (row.deployment, row.model, row.version, row.alias, row.instance) == (
        "web",
        "iris",
        3,
        "champ",
        "h:1",
    )
    assert row.up and row.error == ""
    assert row.requests_total == 170
    assert row.request_rate == pytest.approx(120 / 4)
    assert row.error_ratio == pytest.approx(10 / 120)
    assert row.client_error_ratio == pytest.approx(10 / 120)
    assert row.batch_size_mean == pytest.approx(100.0)  # one model call of 100 rows
    # The quantiles are those of the interval's own observations, bucketed as Prometheus does.
    observed = between + [0.001] * 20
    buckets = [(b, float(sum(o <= b for o in observed))) for b in LATENCY_BUCKETS]
    buckets.append((math.inf, float(len(observed))))
    assert row.latency.p99 == pytest.approx(bucket_quantile(0.99, buckets))
    assert row.latency.p50 == pytest.approx(bucket_quantile(0.5, buckets))
    assert 0.01 < row.latency.p99 <= 0.025  # 99th of 120: among the 0.02 s answers
    worst = row.worst_drift
    assert worst is not None and worst.feature == "petal_length" and worst.drifted
    assert {d.feature: d.drifted for d in row.drift} == {"petal_length": True, "sepal_width": False}
    assert row.drift_window_rows == 300


def test_later_snapshots_diff_against_the_previous_scrape_without_waiting() -> None:
    m = ServerMetrics()
    pages_list: list[str | Exception] = [page(m)]
    answer(m, [0.002] * 10)
    pages_list.append(page(m))
    answer(m, [0.002] * 30)
    pages_list.append(page(m))
    source, slept = scrape_source([ScrapeTarget("http://h:1")], Pages({"h:1": pages_list}))
    assert source.snapshot().rows[0].request_rate == pytest.approx(10.0)  # 10 in 1 s
    assert source.snapshot().rows[0].request_rate == pytest.approx(30.0)  # 30 in the next 1 s
    assert slept == [2.0]  # only the first snapshot waited for a second scrape


def test_a_restarted_server_counts_from_zero_not_negative() -> None:
    before = ServerMetrics()
    answer(before, [0.002] * 500)
    after = ServerMetrics()  # a new process: counters start again
    answer(after, [0.002] * 8)
    source, _ = scrape_source(
        [ScrapeTarget("http://h:1")], Pages({"h:1": [page(before), page(after)]})
    )
    row = source.snapshot().rows[0]
    assert row.request_rate == pytest.approx(8.0)
    assert row.requests_total == 8


def test_idle_interval_has_zero_rate_and_no_quantiles() -> None:
    m = ServerMetrics()
    answer(m, [0.002] * 5)
    source, _ = scrape_source([ScrapeTarget("http://h:1")], Pages({"h:1": [page(m), page(m)]}))
    row = source.snapshot().rows[0]
    assert row.request_rate == 0.0
    assert row.error_ratio is None and row.latency.p99 is None and row.batch_size_mean is None


def test_a_server_watched_by_address_names_its_model_from_model_info() -> None:
    m = ServerMetrics()
    m.set_model("iris", "7", "r")
    source, _ = scrape_source([ScrapeTarget("http://h:1")], Pages({"h:1": [page(m), page(m)]}))
    row = source.snapshot().rows[0]
    assert (row.model, row.version, row.deployment, row.instance) == ("iris", 7, "", "h:1")


def test_per_version_sums_the_deployments_of_a_version() -> None:
    pages: dict[str, list[str | Exception]] = {}
    for host, n in (("a:1", 10), ("b:1", 30)):
        m = ServerMetrics()
        pages[host] = [page(m)]
        answer(m, [0.002] * n)
        pages[host].append(page(m))
    targets = [
        ScrapeTarget("http://a:1", deployment="a", model="iris", version=3),
        ScrapeTarget("http://b:1", deployment="b", model="iris", version=3),
    ]
    source, _ = scrape_source(targets, Pages(pages), times=[0.0, 0.0, 2.0, 2.0])
    (row,) = source.snapshot(per="version").rows
    assert (row.model, row.version, row.deployment, row.instance) == ("iris", 3, "", "")
    assert row.request_rate == pytest.approx(20.0)
    assert row.requests_total == 40


def test_an_unreachable_target_is_a_down_row_and_all_unreachable_is_unavailable() -> None:
    m = ServerMetrics()
    refused = httpx.ConnectError("connection refused")
    pages = Pages({"a:1": [page(m), page(m)], "b:1": [refused]})
    targets = [
        ScrapeTarget("http://a:1", deployment="a"),
        ScrapeTarget("http://b:1", deployment="b"),
    ]
    source, _ = scrape_source(targets, pages)
    rows = {r.deployment: r for r in source.snapshot().rows}
    assert rows["a"].up and not rows["b"].up
    assert "unreachable" in rows["b"].error and "b:1" in rows["b"].error

    source, _ = scrape_source([ScrapeTarget("http://b:1")], Pages({"b:1": [refused]}))
    with pytest.raises(Unavailable, match="no target answered"):
        source.snapshot()


def test_a_non_metrics_page_is_reported_as_such() -> None:
    pages = Pages({"a:1": ["<html>not metrics {</html>"]})
    source, _ = scrape_source([ScrapeTarget("http://a:1")], pages)
    with pytest.raises(Unavailable, match="not a Prometheus exposition"):
        source.snapshot()


def test_scope_skips_targets_it_rules_out_without_scraping_them() -> None:
    m = ServerMetrics()
    pages = Pages({"a:1": [page(m), page(m)], "b:1": []})
    targets = [
        ScrapeTarget("http://a:1", deployment="a"),
        ScrapeTarget("http://b:1", deployment="b"),
    ]
    source, _ = scrape_source(targets, pages)
    rows = source.snapshot(Scope(deployment="a")).rows
    assert [r.deployment for r in rows] == ["a"]
    assert "b:1" not in pages.asked


# --------------------------------------------------------------------------- Prometheus


class FakeProm:
    """Stands in for PrometheusConnect: answers by the start of the query, records each query."""

    def __init__(self, answers: list[tuple[Callable[[str], bool], list[dict[str, Any]]]]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any:
        self.queries.append(query)
        for matches, result in self.answers:
            if matches(query):
                return result
        return []

    def custom_query_range(
        self, query: str, start_time: Any, end_time: Any, step: str, params: Any = None
    ) -> Any:
        self.queries.append(query)
        return [
            {"metric": {"deployment": "web"}, "values": [[1.0, "0.5"], [2.0, "NaN"], [3.0, "0.7"]]}
        ]


WEB = {"deployment": "web", "model": "iris", "version": "3", "alias": "champion", "instance": "h:1"}


def sample(value: float | str, **labels: str) -> dict[str, Any]:
    return {"metric": {**WEB, **labels}, "value": [1700000000.0, str(value)]}


def test_prometheus_snapshot_maps_answers_to_rows_and_alerts() -> None:
    fake = FakeProm(
        [
            (lambda q: q.startswith("max by") and "(up{" in q, [sample(1)]),
            (lambda q: "rate(" not in q and "(mlops_requests_total" in q, [sample(1234)]),
            (
                lambda q: (
                    q.startswith("sum by") and "rate(mlops_requests_total" in q and "/" not in q
                ),
                [sample(12.5)],
            ),
            (lambda q: '"5.."' in q, [sample(0.02)]),
            (lambda q: '"4.."' in q, [sample("NaN")]),
            (lambda q: q.startswith("histogram_quantile(0.99,"), [sample(0.0123)]),
            (lambda q: q.startswith("histogram_quantile(0.5,"), [sample(0.002)]),
            (lambda q: "mlops_batch_size_sum" in q, [sample(4)]),
            (
                lambda q: "mlops_feature_psi" in q,
                [sample(0.31, feature="petal_length"), sample(0.05, feature="sepal_width")],
            ),
            (lambda q: "mlops_feature_ks_pvalue" in q, [sample(0.2, feature="petal_length")]),
            (
                lambda q: q.startswith("ALERTS{") or q == "ALERTS",
                [
                    sample(
                        1,
                        __name__="ALERTS",
                        alertname="MlopsFeatureDrift",
                        alertstate="firing",
                        severity="warning",
                        feature="petal_length",
                    ),
                    sample(
                        1,
                        __name__="ALERTS",
                        alertname="MlopsHighLatencyP99",
                        alertstate="pending",
                        severity="warning",
                    ),
                ],
            ),
            (
                lambda q: q.startswith("ALERTS_FOR_STATE"),
                [
                    sample(
                        1700000000,
                        __name__="ALERTS_FOR_STATE",
                        alertname="MlopsFeatureDrift",
                        severity="warning",
                        feature="petal_length",
                    )
                ],
            ),
        ]
    )
    source = PrometheusSource("http://prom:9090/", client=fake, window="30s")
    snap = source.snapshot()

    assert snap.source == "prometheus http://prom:9090" and snap.window_seconds == 30
    (row,) = snap.rows
    assert (row.deployment, row.model, str(row.version), row.alias, row.instance) == tuple(
        WEB.values()
    )
    assert row.up and row.requests_total == 1234 and row.request_rate == 12.5
    assert row.error_ratio == 0.02 and row.client_error_ratio is None  # NaN: no requests
    assert (row.latency.p50, row.latency.p95, row.latency.p99) == (0.002, None, 0.0123)
    assert row.batch_size_mean == 4
    worst = row.worst_drift
    assert (
        worst is not None
        and worst.feature == "petal_length"
        and worst.psi == 0.31
        and worst.drifted
    )
    assert [a.name for a in snap.alerts or ()] == ["MlopsFeatureDrift", "MlopsHighLatencyP99"]
    firing = (snap.alerts or ())[0]
    assert firing.state == "firing" and firing.severity == "warning"
    assert firing.labels["feature"] == "petal_length" and "alertstate" not in firing.labels
    assert firing.active_since is not None and firing.active_since.timestamp() == 1700000000
    assert [a.name for a in row.alerts] == ["MlopsFeatureDrift", "MlopsHighLatencyP99"]
    assert all("[30s]" in q for q in fake.queries if "rate(" in q)


def test_prometheus_scope_reaches_every_query_escaped() -> None:
    fake = FakeProm([])
    source = PrometheusSource("http://prom:9090", client=fake)
    snap = source.snapshot(Scope(model='x"} or up{job="prometheus'))
    assert snap.rows == () and snap.alerts == ()
    escaped = r'model="x\"} or up{job=\"prometheus"'
    assert fake.queries and all(escaped in q for q in fake.queries), fake.queries


def test_prometheus_history_drops_nan_points() -> None:
    source = PrometheusSource("http://prom:9090", client=FakeProm([]))
    (series,) = source.history("p99", minutes=10)
    assert series.name == "p99" and series.labels == {"deployment": "web"}
    assert series.points == ((1.0, 0.5), (3.0, 0.7))
    with pytest.raises(InvalidInput):
        source.history("nonsense", minutes=10)  # type: ignore[arg-type]


class Raising(FakeProm):
    def __init__(self, exc: Exception) -> None:
        super().__init__([])
        self.exc = exc

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any:
        raise self.exc


def test_prometheus_failures_become_backend_errors() -> None:
    import requests
    from prometheus_api_client.exceptions import PrometheusApiClientException

    down = PrometheusSource("http://prom:9090", client=Raising(requests.ConnectionError("refused")))
    with pytest.raises(Unavailable, match="Prometheus at http://prom:9090 is unreachable"):
        down.snapshot()
    bad = PrometheusApiClientException("HTTP Status Code 400 (b'bad_data')")
    with pytest.raises(InvalidInput):
        PrometheusSource("http://p", client=Raising(bad)).snapshot()
    broken = PrometheusApiClientException("HTTP Status Code 503 (b'overloaded')")
    with pytest.raises(Unavailable):
        PrometheusSource("http://p", client=Raising(broken)).snapshot()
    not_prometheus = PrometheusApiClientException("HTTP Status Code 404 (b'nope')")
    with pytest.raises(Unavailable):
        PrometheusSource("http://p", client=Raising(not_prometheus)).snapshot()


def test_a_prometheus_that_is_not_there_fails_fast() -> None:
    from tests.services import CountingDeadEnd

    # Counted, not timed: one quick retry, not seconds of back-off, before "unreachable".
    with CountingDeadEnd() as dead:
        source = PrometheusSource(dead.url, client=connect_prometheus(dead.url, timeout=5))
        with pytest.raises(Unavailable, match="unreachable"):
            source.snapshot()
        assert 1 <= dead.connections <= 2, dead.connections


def test_quality_from_labels_counts_for_the_version_that_answered_the_rows() -> None:
    """After a switch the new server also exports what it read back of the old version's
    rows; the row of version 3 shows version 3's figures only."""
    m = ServerMetrics()
    m.set_model("iris", "3", "run1")
    for version, accuracy, rows in (("2", 0.5, 80), ("3", 0.92, 412)):
        m.model_quality.labels(model_version=version, metric="accuracy", window="1000").set(
            accuracy
        )
        m.model_quality.labels(model_version=version, metric="f1_macro", window="1000").set(0.9)
        m.labelled_rows.labels(model_version=version).set(rows)
        m.label_coverage.labels(model_version=version).set(rows / 1000)
    pages = Pages({"h:1": [page(m), page(m)]})
    target = ScrapeTarget("http://h:1", deployment="web", model="iris", version=3, alias="champ")
    source, _ = scrape_source([target], pages, times=[10.0, 14.0])

    (row,) = source.snapshot().rows

    assert row.quality == {"accuracy": 0.92, "f1_macro": 0.9}
    assert (row.labelled_rows, row.label_coverage) == (412, 0.412)
    from console import format as fmt

    assert fmt.quality(row.quality, row.labelled_rows, row.label_coverage) == "acc 92.0% n=412 41%"
    assert fmt.quality({}, None, None) == "-"
