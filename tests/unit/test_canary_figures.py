"""A version's figures over an interval from two scrapes of its /metrics, and the PromQL that asks
Prometheus for the same figures."""

from __future__ import annotations

import math
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import generate_latest

from backends.canary.checks import METRICS, Verdict, evaluate, parse_checks
from backends.canary.figures import (
    Figures,
    figures_between,
    figures_from_prometheus,
    promql,
    window,
)
from backends.errors import InvalidInput, Unavailable
from backends.prometheus.exposition import parse_exposition
from backends.prometheus.queries import Queries, Scope, bucket_quantile
from backends.prometheus.scrape_source import ScrapeSource
from backends.prometheus.sources import Vector
from backends.records import ScrapeTarget
from server.metrics import LATENCY_BUCKETS, ServerMetrics

BOUNDS = ("0.1", "0.2", "0.4", "+Inf")


def page(
    requests: dict[str, float],
    buckets: dict[str, tuple[float, float, float, float]],
    *,
    quality: dict[tuple[str, str], float] | None = None,
    quality_rows: dict[str, float] | None = None,
    version: str = "2",
    started: float | None = 1_700_000_000.0,
) -> str:
    """An exposition as the model server writes it, by hand: requests by status, cumulative
    latency buckets by status (le 0.1, 0.2, 0.4, +Inf), quality by (model_version, metric)."""
    lines = [
        "# HELP mlops_requests_total Requests answered.",
        "# TYPE mlops_requests_total counter",
    ]
    for status, count in requests.items():
        lines.append(f'mlops_requests_total{{endpoint="predict",status="{status}"}} {count}')
    lines += [
        "# HELP mlops_request_duration_seconds Time to answer a request.",
        "# TYPE mlops_request_duration_seconds histogram",
    ]
    for status, counts in buckets.items():
        labels = f'endpoint="predict",status="{status}"'
        for le, count in zip(BOUNDS, counts, strict=True):
            lines.append(f'mlops_request_duration_seconds_bucket{{{labels},le="{le}"}} {count}')
        lines.append(f"mlops_request_duration_seconds_count{{{labels}}} {counts[-1]}")
        lines.append(f"mlops_request_duration_seconds_sum{{{labels}}} {counts[-1] * 0.1}")
    lines += [
        "# HELP mlops_model_info The model being served (value 1).",
        "# TYPE mlops_model_info gauge",
        f'mlops_model_info{{name="iris",run_id="abc",version="{version}"}} 1.0',
        "# HELP mlops_model_quality Realized quality over the latest labelled rows of a version.",
        "# TYPE mlops_model_quality gauge",
    ]
    for (model_version, metric), value in (quality or {}).items():
        labels = f'metric="{metric}",model_version="{model_version}",window="1000"'
        lines.append(f"mlops_model_quality{{{labels}}} {value}")
    lines += [
        "# HELP mlops_model_quality_rows Labelled rows in a version's quality window.",
        "# TYPE mlops_model_quality_rows gauge",
    ]
    for model_version, rows in (quality_rows or {}).items():
        lines.append(f'mlops_model_quality_rows{{model_version="{model_version}"}} {rows}')
    if started is not None:
        lines += [
            "# HELP process_start_time_seconds Start time of the process.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {started}",
        ]
    return "\n".join(lines) + "\n"


# Before: 50 slow requests, all above 0.4 s. In the interval: 100 more, of which 10 are 500s
# (all under 0.1 s) and 90 are 200s: 30 under 0.1 s, 40 in (0.1, 0.2], 20 in (0.2, 0.4].
BEFORE = page({"200": 50}, {"200": (0, 0, 0, 50)})
AFTER = page(
    {"200": 140, "500": 10},
    {"200": (30, 70, 90, 140), "500": (10, 10, 10, 10)},
    quality={("2", "accuracy"): 0.93, ("2", "f1_macro"): 0.91, ("1", "accuracy"): 0.97},
    quality_rows={"2": 120, "1": 800},
)


def test_figures_of_the_interval_only() -> None:
    figures = figures_between(BEFORE, AFTER, 20.0)

    assert not figures.restarted
    assert figures.seconds == 20.0
    assert figures.requests == 100 and figures.server_errors == 10
    assert figures.request_rate == pytest.approx(5.0)
    assert figures.error_ratio == pytest.approx(0.1)
    # Summed over both status series, the interval's buckets are 40, 80, 100, 100 (cumulative):
    # p50 is rank 50, 10 into the 40 of (0.1, 0.2]: 0.1 + 0.1 * 10/40.
    assert figures.p50 == pytest.approx(0.125)
    # p95: rank 95, 15 into the 20 of (0.2, 0.4]; p99: rank 99, 19 into them.
    assert figures.p95 == pytest.approx(0.2 + 0.2 * 15 / 20)
    assert figures.p99 == pytest.approx(0.2 + 0.2 * 19 / 20)
    # The quality of the version the server serves (2), not the earlier version's (1).
    assert figures.version == "2"
    assert figures.accuracy == 0.93 and figures.f1_macro == 0.91
    assert figures.mae is None and figures.rmse is None
    assert figures.labelled_rows == 120


def test_parsed_expositions_give_the_same_figures() -> None:
    parsed = figures_between(parse_exposition(BEFORE), parse_exposition(AFTER), 20.0)
    assert parsed == figures_between(BEFORE, AFTER, 20.0)


def test_figures_answer_every_check_metric() -> None:
    figures = figures_between(BEFORE, AFTER, 20.0)
    values = figures.values()
    assert tuple(values) == METRICS
    assert values["p99"] == figures.p99 and figures.value("error_ratio") == figures.error_ratio
    assert figures.to_dict()["requests"] == 100


def test_client_errors_are_not_the_servers_errors() -> None:
    before = page({"200": 0, "422": 0}, {})
    after = page({"200": 90, "422": 10, "503": 0}, {})
    figures = figures_between(before, after, 10.0)
    assert figures.requests == 100 and figures.error_ratio == 0.0


def test_a_counter_that_went_down_means_a_restart_and_counts_from_zero() -> None:
    before = page({"200": 1000, "500": 5}, {"200": (900, 1000, 1000, 1000)})
    # The container restarted and has answered 30 requests since: 20 fine, 10 failed.
    after = page(
        {"200": 20, "500": 10}, {"200": (20, 20, 20, 20), "500": (0, 0, 10, 10)}, started=None
    )
    figures = figures_between(before, after, 10.0)
    assert figures.restarted
    # One reset means every counter reset: 500's 10 counts in full though it exceeds 5.
    assert figures.requests == 30 and figures.server_errors == 10
    assert figures.error_ratio == pytest.approx(10 / 30)
    # Buckets 20, 20, 30, 30: p50 (rank 15) in (0, 0.1]; p99 (rank 29.7) in (0.2, 0.4].
    assert figures.p50 == pytest.approx(0.1 * 15 / 20)
    assert figures.p99 == pytest.approx(0.2 + 0.2 * 9.7 / 10)


def test_a_new_process_start_time_is_a_restart_even_when_counters_grew() -> None:
    before = page({"200": 10}, {"200": (10, 10, 10, 10)}, started=100.0)
    after = page({"200": 25}, {"200": (25, 25, 25, 25)}, started=500.0)
    figures = figures_between(before, after, 10.0)
    assert figures.restarted and figures.requests == 25
    same = figures_between(before, page({"200": 25}, {"200": (25,) * 4}, started=100.0), 10.0)
    assert not same.restarted and same.requests == 15


def test_no_traffic_leaves_ratios_and_latency_without_a_figure() -> None:
    figures = figures_between(AFTER, AFTER, 60.0)
    assert figures.requests == 0
    assert figures.request_rate == 0.0  # a figure: nothing came
    assert figures.error_ratio is None
    assert (figures.p50, figures.p95, figures.p99) == (None, None, None)
    # A server that has never answered has no latency series at all: no figure either.
    empty = page({}, {})
    assert figures_between(empty, empty, 60.0).p99 is None
    results = evaluate(parse_checks(["error_ratio<0.01", "p99<0.25"]), figures.values(), {})
    assert {r.verdict for r in results} == {Verdict.INCONCLUSIVE}


def test_too_few_requests_decide_nothing() -> None:
    few = figures_between(BEFORE, AFTER, 20.0, min_requests=101)
    assert few.requests == 100 and few.request_rate == pytest.approx(5.0)
    assert (few.error_ratio, few.p50, few.p95, few.p99) == (None, None, None, None)
    enough = figures_between(BEFORE, AFTER, 20.0, min_requests=100)
    assert enough.error_ratio == pytest.approx(0.1) and enough.p99 is not None


def test_quality_of_a_named_version_and_a_minimum_of_labelled_rows() -> None:
    assert figures_between(BEFORE, AFTER, 1.0, version="1").accuracy == 0.97
    assert figures_between(BEFORE, AFTER, 1.0, version="7").accuracy is None
    assert figures_between(BEFORE, AFTER, 1.0, min_labelled_rows=100).accuracy == 0.93
    too_few = figures_between(BEFORE, AFTER, 1.0, min_labelled_rows=500)
    assert too_few.accuracy is None and too_few.labelled_rows == 120
    # No labels yet: no quality series at all.
    unlabelled = figures_between(BEFORE, page({"200": 60}, {"200": (10, 10, 10, 60)}), 1.0)
    assert unlabelled.accuracy is None and unlabelled.labelled_rows is None


def test_the_interval_must_be_positive() -> None:
    for seconds in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InvalidInput):
            figures_between(BEFORE, AFTER, seconds)
    with pytest.raises(InvalidInput):
        figures_between("this is { not metrics", AFTER, 1.0)


# --------------------------------------------------------------- against the real server's metrics


def answer(metrics: ServerMetrics, seconds: list[float], status: str = "200") -> None:
    for s in seconds:
        metrics.request_duration.labels(endpoint="predict", status=status).observe(s)
        metrics.requests.labels(endpoint="predict", status=status).inc()


def test_the_server_metrics_agree_with_the_monitors_direct_scrape() -> None:
    """The server's own exposition (real metric names), read by figures_between and by the
    monitor's ScrapeSource: the same interval gives the same figures."""
    m = ServerMetrics()
    m.set_model("iris", "2", "run2")
    answer(m, [3.0] * 40)  # before the interval: must not count
    first = generate_latest(m.registry).decode()
    observed = [0.004] * 60 + [0.03] * 25 + [0.2] * 10 + [0.7] * 4 + [2.0]
    answer(m, observed)
    answer(m, [0.002] * 5, status="503")
    m.model_quality.labels(model_version="2", metric="accuracy", window="1000").set(0.9)
    m.labelled_rows.labels(model_version="2").set(300)
    second = generate_latest(m.registry).decode()

    figures = figures_between(first, second, 4.0)

    pages = iter([first, second])
    source = ScrapeSource(
        [ScrapeTarget("http://canary:8080", deployment="web", model="iris", version=2)],
        client=httpx.Client(
            transport=httpx.MockTransport(lambda _: httpx.Response(200, text=next(pages)))
        ),
        sleep=lambda _: None,
        clock=iter([10.0, 14.0]).__next__,
    )
    (row,) = source.snapshot().rows
    assert figures.requests == 105 and figures.server_errors == 5
    assert figures.request_rate == pytest.approx(row.request_rate)
    assert figures.error_ratio == pytest.approx(row.error_ratio)
    assert figures.p50 == pytest.approx(row.latency.p50)
    assert figures.p95 == pytest.approx(row.latency.p95)
    assert figures.p99 == pytest.approx(row.latency.p99)
    assert figures.accuracy == 0.9 and figures.labelled_rows == 300
    # And the hand computation: the interval's own observations, bucketed by the server's bounds.
    everything = observed + [0.002] * 5
    cumulative = [(b, float(sum(1 for s in everything if s <= b))) for b in LATENCY_BUCKETS]
    cumulative.append((math.inf, float(len(everything))))
    assert figures.p99 == pytest.approx(bucket_quantile(0.99, cumulative))
    # Rank 103.95 of 105 falls in (0.5, 1], which holds the 4 observations after the 100th.
    assert figures.p99 == pytest.approx(0.5 + 0.5 * (103.95 - 100) / 4)


# --------------------------------------------------------------------------------------- PromQL

CANARY = Scope(deployment="web", version="2", role="canary")


def test_promql_for_traffic_and_latency_is_the_monitors_own_query() -> None:
    queries = Queries(CANARY, "60s", per="version")
    assert promql("request_rate", CANARY, 60) == queries.request_rate()
    assert promql("error_ratio", CANARY, 60) == queries.error_ratio()
    assert promql("p99", CANARY, 60) == (
        "histogram_quantile(0.99, sum by (model, version, le) (rate("
        'mlops_request_duration_seconds_bucket{deployment="web",version="2",role="canary"}[60s])))'
    )
    assert promql("p50", CANARY, "1m") == Queries(CANARY, "1m", per="version").latency_quantile(0.5)
    assert 'status=~"5.."' in promql("error_ratio", CANARY, 30)


def test_promql_for_quality_reads_the_versions_own_rows() -> None:
    assert promql("accuracy", CANARY, 60) == (
        "max by (model, version, model_version) (mlops_model_quality"
        '{deployment="web",version="2",role="canary",metric="accuracy",model_version="2"})'
    )
    assert 'model_version="' not in promql("rmse", Scope(deployment="web"), 60)


def test_promql_refuses_what_it_cannot_ask() -> None:
    with pytest.raises(InvalidInput):
        promql("p90", CANARY, 60)  # type: ignore[arg-type]
    for bad in ("1", "1m]", "", 0, -5):
        with pytest.raises(InvalidInput):
            promql("p99", CANARY, bad)


def test_windows_are_promql_durations() -> None:
    assert window(60) == "60s"
    assert window(60.0) == "60s"
    assert window(1.5) == "1500ms"
    with pytest.raises(InvalidInput):
        window(math.nan)


def test_figures_is_a_frozen_record() -> None:
    figures = figures_between(BEFORE, AFTER, 20.0)
    with pytest.raises(AttributeError):
        figures.p99 = 0.0  # type: ignore[misc]
    assert isinstance(figures, Figures)


def prometheus_answering(values: dict[str, float]) -> tuple[list[str], Callable[[str], Vector]]:
    """A query function (as PrometheusSource.vector) that answers the first of ``values``
    whose key is in the expression, nothing otherwise; and the list of what was asked."""
    asked: list[str] = []

    def query(expression: str) -> Vector:
        asked.append(expression)
        for part, value in values.items():
            if part in expression:
                return [({"deployment": "web"}, value)]
        return []

    return asked, query


def test_figures_from_prometheus_are_the_scopes_own_over_the_window() -> None:
    asked, query = prometheus_answering(
        {
            "min_over_time(up": 1.0,
            "sum_over_time(up": 20.0,
            '{deployment="web",version="3",role="canary",status=~"5.."}': 2.0,
            "increase(mlops_requests_total": 40.0,
            "histogram_quantile(0.99,": 0.3,
            "histogram_quantile(0.5,": 0.1,
            'metric="accuracy"': 0.9,
            "mlops_model_quality_rows": 50.0,
        }
    )
    web3 = Scope(deployment="web", version="3", role="canary")
    got = figures_from_prometheus(query, web3, 20, min_requests=5)
    assert (got.requests, got.server_errors, got.request_rate) == (40.0, 2.0, 2.0)
    assert got.error_ratio == 0.05
    assert (got.p50, got.p95, got.p99) == (0.1, None, 0.3)  # p95: Prometheus had no answer
    assert (got.accuracy, got.f1_macro, got.labelled_rows) == (0.9, None, 50.0)
    assert got.version == "3" and not got.restarted
    assert all('{deployment="web",version="3",role="canary"' in q for q in asked), asked
    assert all("[20s]" in q for q in asked if "increase(" in q or "rate(" in q), asked
    (rows,) = [q for q in asked if "mlops_model_quality_rows" in q]
    assert 'model_version="3"' in rows  # the rows this version answered, not an earlier one's
    assert set(got.values()) <= set(METRICS) and set(got.values()) == set(METRICS)


def test_figures_from_prometheus_with_too_few_requests_decide_nothing() -> None:
    _, query = prometheus_answering(
        {
            "min_over_time(up": 1.0,
            "sum_over_time(up": 10.0,
            "increase(mlops_requests_total": 3.0,
            "histogram_quantile": 0.2,
        }
    )
    got = figures_from_prometheus(query, Scope(deployment="web", version="3"), 10, min_requests=5)
    assert got.requests == 3.0 and got.request_rate == 0.3
    assert (got.error_ratio, got.p50, got.p99) == (None, None, None)
    _, silent = prometheus_answering(
        {"min_over_time(up": 1.0, "sum_over_time(up": 10.0, "histogram_quantile": math.nan}
    )
    nothing = figures_from_prometheus(silent, Scope(deployment="web", version="3"), 10)
    assert (nothing.requests, nothing.request_rate, nothing.p99) == (0.0, 0.0, None)


def test_a_source_prometheus_did_not_scrape_throughout_gives_no_figure() -> None:
    scope = Scope(deployment="web", version="3", role="canary")
    _, never = prometheus_answering({"increase(mlops_requests_total": 50.0})
    with pytest.raises(Unavailable, match="no scrape of deployment=web, version=3"):
        figures_from_prometheus(never, scope, 10)
    # A /metrics that stopped answering mid-window: what it said before is not the window's.
    asked, failed = prometheus_answering(
        {
            "min_over_time(up": 0.0,
            "last_over_time(up": 0.0,
            "sum_over_time(up": 6.0,
            "increase(mlops_requests_total": 50.0,
        }
    )
    with pytest.raises(Unavailable, match=r"could not scrape .* at the end of the last 10s"):
        figures_from_prometheus(failed, scope, 10)
    assert asked[:2] == [
        'min_over_time(up{deployment="web",version="3",role="canary"}[10s])',
        'last_over_time(up{deployment="web",version="3",role="canary"}[10s])',
    ]
    # Every scrape answered, but only one in the window: no increase to read.
    _, single = prometheus_answering({"min_over_time(up": 1.0, "sum_over_time(up": 1.0})
    with pytest.raises(Unavailable, match=r"fewer than twice in the last 10s"):
        figures_from_prometheus(single, scope, 10)
    # Answered at the end, but only once in the window: no increase to read.
    _, once = prometheus_answering(
        {"min_over_time(up": 0.0, "last_over_time(up": 1.0, "sum_over_time(up": 1.0}
    )
    with pytest.raises(Unavailable, match=r"fewer than twice in the last 10s"):
        figures_from_prometheus(once, scope, 10)


def test_one_scrape_missed_mid_window_still_gives_the_figures() -> None:
    """On a busy host a /metrics answer can miss a short scrape timeout once: the scrapes
    around the miss answered, the last one too, and the window is judged on them."""
    _, missed = prometheus_answering(
        {
            "min_over_time(up": 0.0,
            "last_over_time(up": 1.0,
            "sum_over_time(up": 5.0,
            '{deployment="web",version="3",role="canary",status=~"5.."}': 30.0,
            "increase(mlops_requests_total": 50.0,
            "histogram_quantile": 0.2,
        }
    )
    scope = Scope(deployment="web", version="3", role="canary")
    got = figures_from_prometheus(missed, scope, 10, min_requests=5)
    assert (got.requests, got.error_ratio, got.p99) == (50.0, 0.6, 0.2)


def test_figures_from_prometheus_leave_its_errors_to_the_caller() -> None:
    def down(_: str) -> Vector:
        raise InvalidInput("refused")

    with pytest.raises(InvalidInput):
        figures_from_prometheus(down, Scope(deployment="web", version="3"), 10)


def _tasks(pages: dict[str, str]) -> str:
    """Tasks' expositions merged as a swarm router answers them (server.metrics_merge)."""
    from server.metrics_merge import merge

    return merge(pages).decode()


def test_a_services_tasks_count_each_its_own_interval() -> None:
    """Two scrapes of a swarm version's merged /metrics: a task missing from the first one
    (it did not answer in time, or it is new) adds nothing rather than its whole life's
    counts, and a task that restarted counts from zero without making the others count
    their whole lives."""
    a1 = page({"200": 1000}, {"200": (0, 0, 0, 1000)}, started=1.0)
    a2 = page({"200": 1040}, {"200": (40, 40, 40, 1040)}, started=1.0)
    b2 = page({"200": 5000, "500": 900}, {"200": (0, 0, 0, 5000), "500": (0, 0, 0, 900)})
    c1 = page({"200": 700}, {"200": (0, 0, 0, 700)}, started=1.0)
    c2 = page({"200": 10}, {"200": (10, 10, 10, 10)}, started=2.0)  # restarted
    before = _tasks({"10.0.0.2:8080": a1, "10.0.0.4:8080": c1})
    after = _tasks({"10.0.0.2:8080": a2, "10.0.0.3:8080": b2, "10.0.0.4:8080": c2})
    figures = figures_between(before, after, 10.0)
    assert figures.requests == 50 and figures.server_errors == 0
    assert figures.p99 is not None and figures.p99 <= 0.1
