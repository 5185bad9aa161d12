"""A model server's figures over an interval: from two scrapes of its /metrics (the direct
scrape), or from Prometheus (``figures_from_prometheus``, the PromQL ``promql`` writes).

Counters and histogram buckets are differenced between the two scrapes; latency quantiles come
from the bucket increases exactly as ``histogram_quantile`` computes them (the function the
monitor's direct scrape uses, ``backends.prometheus.queries.bucket_quantile``). The quality
gauges are not differenced: the server computes them over its latest labelled rows, so the
figure is the later scrape's value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields

from backends.canary.checks import METRICS, Metric
from backends.errors import InvalidInput, Unavailable
from backends.prometheus.exposition import Exposition, SampleKey, parse_exposition
from backends.prometheus.queries import (
    Queries,
    Scope,
    bucket_quantile,
    counter_increase,
    duration_seconds,
    matcher,
    selector,
)
from backends.prometheus.sources import QUANTILES, Vector

__all__ = ["Figures", "figures_between", "figures_from_prometheus", "promql", "window"]

REQUESTS = "mlops_requests_total"
DURATION_BUCKETS = "mlops_request_duration_seconds_bucket"
QUALITY = "mlops_model_quality"
QUALITY_ROWS = "mlops_model_quality_rows"
MODEL_INFO = "mlops_model_info"
PROCESS_START = "process_start_time_seconds"
QUALITY_METRICS: tuple[Metric, ...] = ("accuracy", "f1_macro", "mae", "rmse")
LATENCY_METRICS: tuple[Metric, ...] = ("p50", "p95", "p99")
_SERVER_ERROR = re.compile(r"5..")


@dataclass(frozen=True)
class Figures:
    """One version's figures over ``seconds``. None: no figure (no requests in the interval for
    ratios and latencies, no labelled rows yet for quality)."""

    seconds: float
    requests: float  # requests answered in the interval
    server_errors: float  # of which 5xx
    restarted: bool  # the server restarted in between: its counters count from zero again
    request_rate: float | None  # per second (0 when none came: a figure, not a missing one)
    error_ratio: float | None
    p50: float | None  # seconds
    p95: float | None
    p99: float | None
    accuracy: float | None
    f1_macro: float | None
    mae: float | None
    rmse: float | None
    labelled_rows: float | None  # rows in the version's quality window
    version: str  # the model version whose quality was read ("" if not known)

    def value(self, metric: Metric) -> float | None:
        """The figure a check on ``metric`` reads."""
        figure: float | None = getattr(self, metric)
        return figure

    def values(self) -> dict[str, float | None]:
        """Every check metric's figure, by name (what ``checks.evaluate`` takes)."""
        return {m: self.value(m) for m in METRICS}

    def to_dict(self) -> dict[str, object]:
        """Plain JSON values."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _restarted(before: Exposition, after: Exposition) -> bool:
    """Whether the process behind ``after`` is not the one behind ``before`` (a single
    server's exposition; a service's tasks are judged each on its own, ``_increases``)."""
    started = [e.samples.get((PROCESS_START, ())) for e in (before, after)]
    if None not in started and started[0] != started[1]:
        return True
    # A counter that went down: one reset means they all did (one process keeps them all).
    return any(
        after.samples[key] < before.samples[key]
        for key in after.monotonic & before.samples.keys()
        if not _of_task(key)
    )


def _of_task(key: SampleKey) -> bool:
    """Whether a sample is one task's of a service (the router's merge labels it ``task``)."""
    return any(name == "task" for name, _ in key[1])


def _increases(before: Exposition, after: Exposition, restarted: bool) -> dict[SampleKey, float]:
    increases = {}
    for key in after.monotonic:
        if _of_task(key):
            # A task missing from the first scrape (it did not answer in time, or it is new)
            # holds counts from before the window: none of them is this window's, so it adds
            # nothing rather than its whole life. A task that restarted counts from zero.
            if key in before.samples:
                increases[key] = counter_increase(before.samples[key], after.samples[key])
            continue
        increases[key] = (
            after.samples[key]
            if restarted
            else counter_increase(before.samples.get(key, 0.0), after.samples[key])
        )
    return increases


def _served_version(after: Exposition) -> str:
    for labels, _ in after.values(MODEL_INFO):
        return labels.get("version", "")
    return ""


def _gauge(after: Exposition, name: str, **wanted: str) -> float | None:
    for labels, value in after.values(name):
        if all(labels.get(k) == v for k, v in wanted.items()) and not math.isnan(value):
            return value
    return None


def figures_between(
    before: Exposition | str,
    after: Exposition | str,
    seconds: float,
    *,
    version: str | None = None,
    min_requests: float = 1,
    min_labelled_rows: float = 0,
) -> Figures:
    """A server's figures between two scrapes ``seconds`` apart (texts or parsed).

    Error ratio and latency are None with fewer than ``min_requests`` requests in the interval
    (a p99 of three requests decides nothing). Quality is that of ``version`` (default: the
    version the server says it serves, in ``mlops_model_info``), and None while its window
    holds fewer than ``min_labelled_rows``.
    A counter lower in the later scrape (or a new process start time) means the server
    restarted: every counter then counts from zero, so the later value is the increase.
    """
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(f"the interval between two scrapes must be positive, not {seconds}")
    first = parse_exposition(before) if isinstance(before, str) else before
    last = parse_exposition(after) if isinstance(after, str) else after
    restarted = _restarted(first, last)
    grown = _increases(first, last, restarted)

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for (name, pairs), increase in grown.items():
        labels = dict(pairs)
        if name == REQUESTS:
            requests += increase
            if _SERVER_ERROR.fullmatch(labels.get("status", "")):
                errors += increase
        elif name == DURATION_BUCKETS:
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + increase
    enough_requests = requests > 0 and requests >= min_requests
    ordered = sorted(buckets.items())
    latency: dict[str, float | None] = {
        name: bucket_quantile(q, ordered) if enough_requests else None
        for name, q in QUANTILES.items()
    }

    served = _served_version(last) if version is None else version
    rows = _gauge(last, QUALITY_ROWS, model_version=served) if served else None
    enough = min_labelled_rows <= 0 or (rows is not None and rows >= min_labelled_rows)
    quality: dict[str, float | None] = {
        m: _gauge(last, QUALITY, model_version=served, metric=m) if served and enough else None
        for m in QUALITY_METRICS
    }
    return _figures(
        seconds, requests, errors, enough_requests, latency, quality, rows, served, restarted
    )


def _figures(
    seconds: float,
    requests: float,
    errors: float,
    enough_requests: bool,
    latency: dict[str, float | None],
    quality: dict[str, float | None],
    rows: float | None,
    version: str,
    restarted: bool = False,
) -> Figures:
    """The record, from counts and figures however they were measured."""
    return Figures(
        seconds=seconds,
        requests=requests,
        server_errors=errors,
        restarted=restarted,
        request_rate=requests / seconds,
        error_ratio=errors / requests if enough_requests else None,
        p50=latency["p50"],
        p95=latency["p95"],
        p99=latency["p99"],
        accuracy=quality["accuracy"],
        f1_macro=quality["f1_macro"],
        mae=quality["mae"],
        rmse=quality["rmse"],
        labelled_rows=rows,
        version=version,
    )


def window(seconds: float) -> str:
    """A PromQL range for an interval in seconds: ``60s``, ``1500ms``."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidInput(f"an interval must be positive, not {seconds}")
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def promql(metric: Metric, scope: Scope, interval: str | float) -> str:
    """The PromQL for ``metric`` over ``interval`` (``1m`` or seconds) for the series in
    ``scope`` (e.g. the canary's deployment and version), in the monitor's own query style."""
    span = interval if isinstance(interval, str) else window(interval)
    duration_seconds(span)  # validates
    queries = Queries(scope, span, per="version")
    if metric == "request_rate":
        return queries.request_rate()
    if metric == "error_ratio":
        return queries.error_ratio()
    if metric in QUANTILES:
        return queries.latency_quantile(QUANTILES[metric])
    if metric not in QUALITY_METRICS:
        raise InvalidInput(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
    where = [matcher("metric", metric)]
    if scope.version:  # the quality of the rows this version answered, not an earlier one's
        where.append(matcher("model_version", scope.version))
    return queries.per_model_version(QUALITY, where=where)


def figures_from_prometheus(
    query: Callable[[str], Vector],
    scope: Scope,
    seconds: float,
    *,
    min_requests: float = 1,
) -> Figures:
    """The figures of the series in ``scope`` (a deployment and a version) over the last
    ``seconds``, asked of Prometheus through ``query`` (an instant query returning a vector).

    The same rules as ``figures_between``: error ratio and latency are None with fewer than
    ``min_requests`` requests in the window, quality is the version's own gauge. Prometheus
    handles a restarted server's counters itself (``increase`` knows resets).

    A source down is no figure: Unavailable when Prometheus has no scrape of the scope in the
    window, when its last scrape in the window failed (``up`` 0: the server's /metrics stopped
    answering, and what it said before would pass for the whole window), or when fewer than
    two scrapes answered. One scrape missed mid-window is not a source down: on a busy host a
    /metrics answer can miss a short scrape timeout, and ``increase`` spans the answered
    scrapes around it. Errors of ``query`` are the caller's."""
    span = window(seconds)
    where = scope.matchers()
    what = ", ".join(f"{k}={v}" for k, v in scope.wanted().items())
    up = selector("up", where)
    scraped = [v for _, v in query(f"min_over_time({up}[{span}])")]
    if not scraped:
        raise Unavailable(
            f"Prometheus has no scrape of {what} in the last {span} (is the interval shorter "
            "than two of its scrapes, or does it not read the targets file?)",
            title="No figures",
        )
    if min(scraped) < 1:
        last = [v for _, v in query(f"last_over_time({up}[{span}])")]
        if not last or min(last) < 1:
            raise Unavailable(
                f"Prometheus could not scrape {what} at the end of the last {span} (up 0): "
                "its /metrics stopped answering",
                title="No figures",
            )
    # An increase needs two answered scrapes in the window (with none missed, one scrape in
    # the window would read as no traffic: it is no figure).
    answered = [v for _, v in query(f"sum_over_time({up}[{span}])")]
    if not answered or min(answered) < 2:
        raise Unavailable(
            f"Prometheus scraped {what} fewer than twice in the last {span} (is the interval "
            "shorter than two of its scrapes?)",
            title="No figures",
        )

    def one(expression: str) -> float | None:
        values = [v for _, v in query(expression) if not math.isnan(v)]
        return max(values) if values else None

    def increase(*extra: str) -> float:
        picked = selector(REQUESTS, [*where, *extra])
        return one(f"sum(increase({picked}[{span}]))") or 0.0

    requests = increase()
    errors = increase(matcher("status", "5..", "=~")) if requests else 0.0
    enough = requests > 0 and requests >= min_requests
    latency: dict[str, float | None] = {
        name: one(promql(name, scope, span)) if enough else None for name in LATENCY_METRICS
    }
    version = scope.version or ""
    quality: dict[str, float | None] = {m: one(promql(m, scope, span)) for m in QUALITY_METRICS}
    rows = (
        one(f"max({selector(QUALITY_ROWS, [*where, matcher('model_version', version)])})")
        if version
        else None
    )
    return _figures(seconds, requests, errors, enough, latency, quality, rows, version)
