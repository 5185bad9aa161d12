"""The monitor's plot data: range queries through PrometheusSource, and the direct scrape's
recorded snapshots in a bounded ring."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from backends.prometheus.history import FIGURES, SnapshotRecorder, prometheus_history
from backends.prometheus.prometheus_source import PrometheusSource
from backends.records import DeploymentHealth, LatencySummary, MonitorSnapshot

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class RangeProm:
    """A PrometheusConnect stand-in answering range queries from ``series`` by query prefix."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    def custom_query(self, query: str, params: Any = None) -> Any:
        raise AssertionError("only range queries are expected")

    def custom_query_range(
        self, query: str, start_time: Any, end_time: Any, step: str, params: Any = None
    ) -> Any:
        self.queries.append(query)
        return next((a for prefix, a in self.answers.items() if query.startswith(prefix)), [])


def ranged(version: str, *points: tuple[float, str]) -> dict[str, Any]:
    labels = {"deployment": "web", "version": version}
    return {"metric": labels, "values": [list(p) for p in points]}


def test_prometheus_history_asks_each_figure_for_the_deployment() -> None:
    fake = RangeProm({"sum by": [ranged("3", (1.0, "2"), (2.0, "4"))]})
    history = prometheus_history(PrometheusSource("http://p", client=fake), "web", 15)
    assert len(fake.queries) == len(FIGURES) == 6
    assert all('deployment="web"' in q for q in fake.queries)
    assert history.deployment == "web" and history.minutes == 15
    assert history.source == "prometheus range query"
    assert history.points("request_rate") == ((1.0, 2.0), (2.0, 4.0))
    assert history.points("p99") == ()  # no answer: no series, no made-up zeros


def test_prometheus_history_of_a_target_without_deployment_asks_by_instance() -> None:
    fake = RangeProm({})
    history = prometheus_history(PrometheusSource("http://p", client=fake), "", 15, "h:8080")
    assert all('instance="h:8080"' in q and "deployment=" not in q for q in fake.queries)
    assert history.deployment == "h:8080" and history.series == ()


def test_two_versions_of_one_deployment_merge_into_one_line_per_figure() -> None:
    # During a rollout both versions answer for a while: rates add up, quality takes the worst.
    both = [ranged("3", (1.0, "2"), (2.0, "4")), ranged("4", (2.0, "1"), (3.0, "5"))]
    fake = RangeProm({"sum by": both, "histogram_quantile(0.99": both})
    history = prometheus_history(PrometheusSource("http://p", client=fake), "web", 15)
    assert history.points("request_rate") == ((1.0, 2.0), (2.0, 5.0), (3.0, 5.0))
    assert history.points("p99") == ((1.0, 2.0), (2.0, 4.0), (3.0, 5.0))


def row(deployment: str = "web", rate: float | None = 2.0, **changes: Any) -> DeploymentHealth:
    base = DeploymentHealth(
        deployment=deployment,
        model="iris",
        version="3",
        alias="champion",
        instance="h:1",
        up=True,
        requests_total=10.0,
        request_rate=rate,
        error_ratio=0.0 if rate else None,
        client_error_ratio=0.0,
        latency=LatencySummary(0.001, 0.002, 0.003) if rate else LatencySummary(None, None, None),
        batch_size_mean=1.0,
        drift=(),
        drift_window_rows=None,
    )
    return replace(base, **changes)


def snapshot(at: datetime, *rows: DeploymentHealth) -> MonitorSnapshot:
    return MonitorSnapshot("direct scrape", 2.0, at, rows, None)


def test_recorder_keeps_a_bounded_ring_per_deployment() -> None:
    now = T0 + timedelta(minutes=10)
    recorder = SnapshotRecorder(size=3, clock=lambda: now)
    for i in range(5):
        recorder.record(snapshot(T0 + timedelta(seconds=i), row(rate=float(i)), row("other")))
    history = recorder.history("web", 15)
    assert history.source == "recorded snapshots" and history.end == now
    assert [v for _, v in history.points("request_rate")] == [2.0, 3.0, 4.0]  # the last 3
    assert history.points("p99")[-1] == ((T0 + timedelta(seconds=4)).timestamp(), 0.003)
    assert [v for _, v in recorder.history("other", 15).points("request_rate")] == [2.0] * 3
    assert recorder.history("nobody", 15).series == ()


def test_recorder_answers_the_span_asked_and_skips_what_was_not_measured() -> None:
    now = T0 + timedelta(minutes=20)
    recorder = SnapshotRecorder(clock=lambda: now)
    recorder.record(snapshot(T0, row(rate=1.0)))  # 20 minutes ago: outside a 15-minute span
    recorder.record(snapshot(T0 + timedelta(minutes=10), row(rate=None)))  # idle: no quantiles
    recorder.record(snapshot(T0 + timedelta(minutes=11), row(up=False, error="refused")))
    recorder.record(snapshot(T0 + timedelta(minutes=12), row(rate=3.0)))
    history = recorder.history("web", 15)
    assert [v for _, v in history.points("request_rate")] == [3.0]
    assert len(history.points("p50")) == 1
    assert [v for _, v in recorder.history("web", 30).points("request_rate")] == [1.0, 3.0]


def test_recorder_keys_a_target_without_deployment_by_its_address() -> None:
    recorder = SnapshotRecorder(clock=lambda: T0)
    recorder.record(snapshot(T0, row(deployment="", instance="h:9")))
    history = recorder.history("", 15, instance="h:9")
    assert history.deployment == "h:9" and history.points("request_rate")
