"""Latency, errors and drift of the serving targets, from Prometheus or from their /metrics.

Two sources answer the same question (``MetricsSource.snapshot``):

* ``PrometheusSource`` asks a Prometheus server (through prometheus-api-client): rates over a
  window, ``histogram_quantile`` over bucket rates, the drift gauges, and the alerts its rules
  raise. It also answers range queries for plots (``history``).
* ``ScrapeSource`` needs no Prometheus (the embedded default): it reads each server's /metrics
  twice, parses both with prometheus_client's parser, and turns the difference into the same
  numbers — rates from counter increases, quantiles from bucket increases computed the way
  Prometheus does. It evaluates no alert rules.

Both reduce to the same named vectors (one value per row key, like a PromQL answer), and one
function turns those into ``DeploymentHealth`` rows, so the two cannot drift apart in meaning.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal, Protocol, get_args

import httpx

from backends.errors import BackendError, InvalidInput, Unavailable
from backends.promql import (
    Queries,
    Scope,
    bucket_quantile,
    counter_increase,
    duration_seconds,
    group_labels,
)
from backends.records import (
    Alert,
    DeploymentHealth,
    FeatureDrift,
    Grouping,
    LatencySummary,
    MonitorSnapshot,
    ScrapeTarget,
    Series,
)

__all__ = [
    "HISTORY_KINDS",
    "Exposition",
    "MetricsSource",
    "PrometheusSource",
    "ScrapeSource",
    "parse_exposition",
]

PSI_THRESHOLD = 0.2
KS_PVALUE_THRESHOLD = 0.05
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
HistoryKind = Literal[
    "request_rate", "error_ratio", "p50", "p95", "p99", "batch_size_mean", "psi", "ks_pvalue"
]
HISTORY_KINDS: tuple[str, ...] = get_args(HistoryKind)
_FEATURE_GAUGES = {
    "psi": "mlops_feature_psi",
    "ks": "mlops_feature_ks",
    "ks_pvalue": "mlops_feature_ks_pvalue",
}

Labels = dict[str, str]
Vector = list[tuple[Labels, float]]


class MetricsSource(Protocol):
    """Where the monitor's numbers come from: a Prometheus server, or the servers themselves."""

    @property
    def description(self) -> str:
        """Which source this is, for the operator ("prometheus http://...", "direct scrape")."""
        ...

    def snapshot(self, scope: Scope | None = None, per: Grouping = "deployment") -> MonitorSnapshot:
        """One row per deployment (or model version) in ``scope``; Unavailable if unreachable."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# --------------------------------------------------------------------------- shared assembly


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass
class _Row:
    values: dict[str, float] = field(default_factory=dict)
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str = ""


def assemble_rows(
    vectors: dict[str, Vector],
    per: Grouping,
    *,
    alerts: Sequence[Alert] = (),
    errors: dict[tuple[str, ...], str] | None = None,
    psi_threshold: float = PSI_THRESHOLD,
    ks_pvalue_threshold: float = KS_PVALUE_THRESHOLD,
) -> tuple[DeploymentHealth, ...]:
    """Rows from named vectors keyed by the grouping labels (the shape of PromQL answers).

    Names: up, requests_total, request_rate, error_ratio, client_error_ratio, p50, p95, p99,
    batch_size_mean, drift_window_rows, and the per-feature psi, ks, ks_pvalue (label
    ``feature``). A row exists for every key that appears in any vector (or in ``errors``).
    """
    keys = group_labels(per)
    rows: dict[tuple[str, ...], _Row] = {}
    for name, vector in vectors.items():
        for labels, value in vector:
            row = rows.setdefault(tuple(labels.get(k, "") for k in keys), _Row())
            if name in _FEATURE_GAUGES:
                row.features.setdefault(labels.get("feature", ""), {})[name] = value
            else:
                row.values[name] = value
    for key, message in (errors or {}).items():
        rows.setdefault(key, _Row()).error = message
    out = []
    for key, row in sorted(rows.items()):
        labels = dict(zip(keys, key, strict=True))
        v = {name: _finite(value) for name, value in row.values.items()}
        drift = tuple(
            _feature(name, stats, psi_threshold, ks_pvalue_threshold)
            for name, stats in sorted(row.features.items())
        )
        up = row.values.get("up")
        out.append(
            DeploymentHealth(
                deployment=labels.get("deployment", ""),
                model=labels.get("model", ""),
                version=labels.get("version", ""),
                alias=labels.get("alias", ""),
                instance=labels.get("instance", ""),
                # No `up` series (a target outside the job) but data: it was scraped, so it is up.
                up=(up == 1) if up is not None else not row.error and bool(row.values),
                requests_total=v.get("requests_total"),
                request_rate=v.get("request_rate"),
                error_ratio=v.get("error_ratio"),
                client_error_ratio=v.get("client_error_ratio"),
                latency=LatencySummary(v.get("p50"), v.get("p95"), v.get("p99")),
                batch_size_mean=v.get("batch_size_mean"),
                drift=drift,
                drift_window_rows=v.get("drift_window_rows"),
                alerts=tuple(a for a in alerts if _concerns(a, labels)),
                error=row.error,
            )
        )
    return tuple(out)


def _feature(
    name: str, stats: dict[str, float], psi_threshold: float, ks_pvalue_threshold: float
) -> FeatureDrift:
    psi = _finite(stats.get("psi", math.nan))
    pvalue = _finite(stats.get("ks_pvalue", math.nan))
    return FeatureDrift(
        feature=name,
        psi=psi,
        ks=_finite(stats.get("ks", math.nan)),
        ks_pvalue=pvalue,
        drifted=(psi is not None and psi > psi_threshold)
        or (pvalue is not None and pvalue < ks_pvalue_threshold),
    )


def _concerns(alert: Alert, row_labels: Labels) -> bool:
    """An alert belongs to a row when it carries the row's labels with the row's values."""
    shared = [k for k in row_labels if k in alert.labels]
    return bool(shared) and all(alert.labels[k] == row_labels[k] for k in shared)


# --------------------------------------------------------------------------- Prometheus


class PromQueryClient(Protocol):
    """The part of prometheus-api-client's PrometheusConnect we use (tests pass a fake)."""

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any: ...

    def custom_query_range(
        self,
        query: str,
        start_time: datetime,
        end_time: datetime,
        step: str,
        params: dict[str, Any] | None = None,
    ) -> Any: ...


def connect_prometheus(url: str, timeout: float = 10.0) -> PromQueryClient:
    """A PrometheusConnect that fails fast: one quick retry, not seconds of back-off."""
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    retry = Retry(total=1, backoff_factor=0, status_forcelist=(502, 503, 504))
    client: PromQueryClient = PrometheusConnect(
        url=url.rstrip("/"), retry=retry, timeout=timeout, disable_ssl=False
    )
    return client


class PrometheusSource:
    """Numbers from a Prometheus server that scrapes the serving targets (job ``job``)."""

    def __init__(
        self,
        url: str,
        *,
        client: PromQueryClient | None = None,
        window: str = "1m",
        job: str = "mlops",
        timeout: float = 10.0,
        psi_threshold: float = PSI_THRESHOLD,
        ks_pvalue_threshold: float = KS_PVALUE_THRESHOLD,
    ) -> None:
        self.url = url.rstrip("/")
        self.window = window
        self.window_seconds = duration_seconds(window)
        self.job = job
        self.psi_threshold = psi_threshold
        self.ks_pvalue_threshold = ks_pvalue_threshold
        self._client = client or connect_prometheus(self.url, timeout)

    @property
    def description(self) -> str:
        return f"prometheus {self.url}"

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def snapshot(self, scope: Scope | None = None, per: Grouping = "deployment") -> MonitorSnapshot:
        """Rates and quantiles over the window, drift gauges, and alerts, per row."""
        q = Queries(scope, self.window, per)
        taken = datetime.now(UTC)
        vectors: dict[str, Vector] = {
            "up": self._vector(q.up(self.job)),
            "requests_total": self._vector(q.requests_total()),
            "request_rate": self._vector(q.request_rate()),
            "error_ratio": self._vector(q.error_ratio()),
            "client_error_ratio": self._vector(q.client_error_ratio()),
            "batch_size_mean": self._vector(q.batch_size_mean()),
            "drift_window_rows": self._vector(q.drift_window_rows()),
            "psi": self._vector(q.feature_gauge("mlops_feature_psi")),
            "ks": self._vector(q.feature_gauge("mlops_feature_ks")),
            "ks_pvalue": self._vector(q.feature_gauge("mlops_feature_ks_pvalue", "min")),
        }
        for name, quantile in QUANTILES.items():
            vectors[name] = self._vector(q.latency_quantile(quantile))
        if per == "deployment":
            self._name_unlabelled(vectors, q)
        alerts = self._alerts(q)
        rows = assemble_rows(
            vectors,
            per,
            alerts=alerts,
            psi_threshold=self.psi_threshold,
            ks_pvalue_threshold=self.ks_pvalue_threshold,
        )
        return MonitorSnapshot(
            source=self.description,
            window_seconds=self.window_seconds,
            taken_at=taken,
            rows=rows,
            alerts=alerts,
        )

    def alerts(self, scope: Scope | None = None) -> tuple[Alert, ...]:
        """Pending and firing alerts about the scope, firing first."""
        return self._alerts(Queries(scope, self.window))

    def history(
        self,
        kind: HistoryKind,
        scope: Scope | None = None,
        *,
        minutes: float = 30,
        step: str | None = None,
        per: Grouping = "deployment",
    ) -> tuple[Series, ...]:
        """A range query over the last ``minutes`` (about 120 points), for plots."""
        q = Queries(scope, self.window, per)
        expressions: dict[str, Callable[[], str]] = {
            "request_rate": q.request_rate,
            "error_ratio": q.error_ratio,
            "batch_size_mean": q.batch_size_mean,
            "psi": lambda: q.feature_gauge("mlops_feature_psi"),
            "ks_pvalue": lambda: q.feature_gauge("mlops_feature_ks_pvalue", "min"),
        }
        for name, quantile in QUANTILES.items():
            expressions[name] = partial(q.latency_quantile, quantile)
        if kind not in expressions:
            raise InvalidInput(f"unknown history {kind!r}; one of {', '.join(HISTORY_KINDS)}")
        if minutes <= 0:
            raise InvalidInput("minutes must be positive")
        step = step or f"{max(1, round(minutes * 60 / 120))}s"
        duration_seconds(step)
        end = datetime.now(UTC)
        start = end - timedelta(minutes=minutes)
        series = []
        with self._errors():
            result = self._client.custom_query_range(expressions[kind](), start, end, step)
            for item in result or []:
                points = tuple(
                    (float(t), float(v))
                    for t, v in item.get("values", [])
                    if math.isfinite(float(v))
                )
                series.append(Series(name=kind, labels=dict(item.get("metric", {})), points=points))
        return tuple(sorted(series, key=lambda s: sorted(s.labels.items())))

    # ----------------------------------------------------------------------- internals

    def _vector(self, query: str) -> Vector:
        with self._errors():
            result = self._client.custom_query(query)
            return [
                (dict(item.get("metric", {})), float(item["value"][1])) for item in result or []
            ]

    def _name_unlabelled(self, vectors: dict[str, Vector], q: Queries) -> None:
        # A target added by hand (no file_sd labels) still says what it serves in model_info.
        served = {labels.get("instance", ""): labels for labels, _ in self._vector(q.model_info())}
        for vector in vectors.values():
            for labels, _ in vector:
                info = served.get(labels.get("instance", ""))
                if info and not labels.get("model"):
                    labels["model"] = info.get("name", "")
                    labels["version"] = info.get("exported_version") or info.get("version", "")

    def _alerts(self, q: Queries) -> tuple[Alert, ...]:
        since: dict[frozenset[tuple[str, str]], float] = {}
        for labels, value in self._vector(q.alerts_since()):
            labels.pop("__name__", None)
            since[frozenset(labels.items())] = value
        alerts = []
        for labels, _ in self._vector(q.alerts()):
            labels.pop("__name__", None)
            state = labels.pop("alertstate", "")
            if state not in ("pending", "firing"):
                continue
            active = since.get(frozenset(labels.items()))
            name = labels.pop("alertname", "")
            alerts.append(
                Alert(
                    name=name,
                    state="firing" if state == "firing" else "pending",
                    severity=labels.get("severity", ""),
                    labels=labels,
                    active_since=datetime.fromtimestamp(active, UTC) if active else None,
                )
            )
        alerts.sort(key=lambda a: (a.state != "firing", a.name, sorted(a.labels.items())))
        return tuple(alerts)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """prometheus-api-client and requests failures → Unavailable / InvalidInput."""
        from prometheus_api_client.exceptions import PrometheusApiClientException
        from requests.exceptions import RequestException

        try:
            yield
        except BackendError:
            raise
        except RequestException as exc:
            raise Unavailable(
                f"Prometheus at {self.url} is unreachable ({exc.__class__.__name__}); "
                "is it running? (unset PROMETHEUS_URL to scrape the servers directly)",
                title="Prometheus unreachable",
            ) from exc
        except PrometheusApiClientException as exc:
            status = re.search(r"HTTP Status Code (\d+)", str(exc))
            code = int(status.group(1)) if status else 0
            if code in (400, 422):  # bad_data / execution error: the query, not the server
                raise InvalidInput(
                    f"Prometheus at {self.url} refused a query: {exc}", title="Bad query"
                ) from exc
            raise Unavailable(
                f"Prometheus at {self.url} failed: {exc}", title="Prometheus unavailable"
            ) from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable(
                f"{self.url} did not answer like a Prometheus server ({exc!r})",
                title="Not Prometheus",
            ) from exc


# --------------------------------------------------------------------------- direct scrape

SampleKey = tuple[str, tuple[tuple[str, str], ...]]
_MONOTONIC_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


@dataclass(frozen=True)
class Exposition:
    """One scrape of /metrics: every sample's value, and which samples only ever grow."""

    samples: dict[SampleKey, float]
    monotonic: frozenset[SampleKey]

    def values(self, name: str) -> Iterator[tuple[Labels, float]]:
        """The samples called ``name``, with their labels."""
        for (sample, labels), value in self.samples.items():
            if sample == name:
                yield dict(labels), value


def parse_exposition(text: str) -> Exposition:
    """Parse Prometheus' text format (prometheus_client's parser); InvalidInput if it is not."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[SampleKey, float] = {}
    monotonic: set[SampleKey] = set()
    try:
        for family in text_string_to_metric_families(text):
            grows = _MONOTONIC_SUFFIXES.get(family.type, ())
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                samples[key] = float(s.value)
                if s.name.endswith(grows) and s.name.startswith(family.name):
                    monotonic.add(key)
    except ValueError as exc:
        raise InvalidInput(f"not a Prometheus exposition: {exc}") from exc
    return Exposition(samples=samples, monotonic=frozenset(monotonic))


@dataclass(frozen=True)
class _Reading:
    """A target between two scrapes: per-second increases of counters, and current values."""

    labels: Labels  # instance, deployment, model, version, alias
    rates: dict[SampleKey, float]
    current: Exposition
    elapsed: float


def _reading(labels: Labels, before: Exposition, after: Exposition, elapsed: float) -> _Reading:
    rates: dict[SampleKey, float] = {}
    if elapsed > 0:
        for key in after.monotonic:
            grown = counter_increase(before.samples.get(key, 0.0), after.samples[key])
            rates[key] = grown / elapsed
    return _Reading(labels=labels, rates=rates, current=after, elapsed=elapsed)


def _sum_rates(readings: Sequence[_Reading], name: str, keep: Callable[[Labels], bool]) -> float:
    return sum(
        rate
        for r in readings
        for (sample, labels), rate in r.rates.items()
        if sample == name and keep(dict(labels))
    )


def _status_is(pattern: str, labels: Labels) -> bool:
    return re.fullmatch(pattern, labels.get("status", "")) is not None


def _vectors_from_readings(readings: Sequence[_Reading], per: Grouping) -> dict[str, Vector]:
    """The same named vectors Prometheus answers, computed from scrape differences."""
    keys = group_labels(per)
    groups: dict[tuple[str, ...], list[_Reading]] = {}
    for r in readings:
        groups.setdefault(tuple(r.labels.get(k, "") for k in keys), []).append(r)
    vectors: dict[str, Vector] = {}

    def put(name: str, labels: Labels, value: float) -> None:
        vectors.setdefault(name, []).append((labels, value))

    for key, members in groups.items():
        labels = dict(zip(keys, key, strict=True))
        put("up", labels, 1.0)
        put(
            "requests_total",
            labels,
            sum(v for r in members for _, v in r.current.values("mlops_requests_total")),
        )
        total = _sum_rates(members, "mlops_requests_total", lambda _: True)
        put("request_rate", labels, total)
        for name, pattern in (("error_ratio", "5.."), ("client_error_ratio", "4..")):
            part = _sum_rates(members, "mlops_requests_total", partial(_status_is, pattern))
            put(name, labels, part / total if total else math.nan)
        buckets: dict[float, float] = {}
        for r in members:
            for (sample, pairs), rate in r.rates.items():
                if sample == "mlops_request_duration_seconds_bucket":
                    bound = float(dict(pairs)["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + rate
        for name, q in QUANTILES.items():
            quantile = bucket_quantile(q, sorted(buckets.items()))
            put(name, labels, math.nan if quantile is None else quantile)
        calls = _sum_rates(members, "mlops_batch_size_count", lambda _: True)
        rows = _sum_rates(members, "mlops_batch_size_sum", lambda _: True)
        put("batch_size_mean", labels, rows / calls if calls else math.nan)
        window = [v for r in members for _, v in r.current.values("mlops_drift_window_rows")]
        if window:
            put("drift_window_rows", labels, max(window))
        for name, metric in _FEATURE_GAUGES.items():
            pick = min if name == "ks_pvalue" else max
            per_feature: dict[str, list[float]] = {}
            for r in members:
                for lbs, value in r.current.values(metric):
                    per_feature.setdefault(lbs.get("feature", ""), []).append(value)
            for feature, values in per_feature.items():
                put(name, {**labels, "feature": feature}, pick(values))
    return vectors


def _may_admit(scope: Scope, target: ScrapeTarget) -> bool:
    """False when the target's own labels already rule it out (no need to scrape it)."""
    known = {
        "instance": target.address,
        "deployment": target.deployment,
        "model": target.model,
        "version": target.version,
        "alias": target.alias,
    }
    return all(not known[k] or known[k] == v for k, v in scope.wanted().items())


class ScrapeSource:
    """Numbers without Prometheus: each target's /metrics read twice, ``interval`` apart.

    The first snapshot of a target waits ``interval`` for its second scrape; later snapshots
    diff against the previous one, so a refreshing view costs one scrape per target.
    """

    def __init__(
        self,
        targets: Sequence[ScrapeTarget],
        *,
        client: httpx.Client | None = None,
        interval: float = 2.0,
        timeout: float = 5.0,
        psi_threshold: float = PSI_THRESHOLD,
        ks_pvalue_threshold: float = KS_PVALUE_THRESHOLD,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = tuple(targets)
        self.interval = interval
        self.psi_threshold = psi_threshold
        self.ks_pvalue_threshold = ks_pvalue_threshold
        self._client = client or httpx.Client(timeout=timeout)
        self._sleep = sleep
        self._clock = clock
        self._previous: dict[str, tuple[float, Exposition]] = {}

    @property
    def description(self) -> str:
        return "direct scrape"

    def close(self) -> None:
        self._client.close()

    def scrape(self, target: ScrapeTarget) -> Exposition:
        """Read and parse one target's /metrics; Unavailable when it does not answer."""
        url = target.url.rstrip("/") + "/metrics"
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"{url} is unreachable ({exc.__class__.__name__}: {exc})",
                title="Target unreachable",
            ) from exc
        if response.status_code != 200:
            raise Unavailable(f"{url} answered {response.status_code}", title="Target failed")
        try:
            return parse_exposition(response.text)
        except InvalidInput as exc:
            raise Unavailable(f"{url}: {exc.message}", title="Not a metrics endpoint") from exc

    def snapshot(self, scope: Scope | None = None, per: Grouping = "deployment") -> MonitorSnapshot:
        """Rates over the time since the last scrape; Unavailable when no target answers."""
        taken = datetime.now(UTC)
        current: dict[str, tuple[float, Exposition]] = {}
        failed: dict[str, str] = {}
        targets = [t for t in self.targets if scope is None or _may_admit(scope, t)]
        for t in targets:
            self._read(t, current, failed)
        fresh = [t for t in targets if t.url in current and t.url not in self._previous]
        if fresh:
            self._sleep(self.interval)
            for t in fresh:
                self._previous[t.url] = current.pop(t.url)
                self._read(t, current, failed)
        if targets and not current:
            raise Unavailable(
                "no target answered: " + "; ".join(failed.values()), title="Targets unreachable"
            )
        readings = []
        for t in targets:
            if t.url not in current:
                self._previous.pop(t.url, None)  # after an outage, start a fresh pair
                continue
            before_at, before = self._previous[t.url]
            after_at, after = current[t.url]
            readings.append(_reading(self._labels(t, after), before, after, after_at - before_at))
            self._previous[t.url] = current[t.url]
        readings = [r for r in readings if scope is None or scope.admits(r.labels)]
        keys = group_labels(per)
        errors = {
            tuple(self._labels(t, None).get(k, "") for k in keys): failed[t.url]
            for t in targets
            if t.url in failed
        }
        rows = assemble_rows(
            _vectors_from_readings(readings, per),
            per,
            errors=errors,
            psi_threshold=self.psi_threshold,
            ks_pvalue_threshold=self.ks_pvalue_threshold,
        )
        return MonitorSnapshot(
            source=self.description,
            window_seconds=max((r.elapsed for r in readings), default=0.0),
            taken_at=taken,
            rows=rows,
            alerts=None,
        )

    def _read(
        self,
        target: ScrapeTarget,
        into: dict[str, tuple[float, Exposition]],
        failed: dict[str, str],
    ) -> None:
        try:
            exposition = self.scrape(target)
        except Unavailable as exc:
            failed[target.url] = exc.message
            into.pop(target.url, None)
            return
        failed.pop(target.url, None)
        into[target.url] = (self._clock(), exposition)

    @staticmethod
    def _labels(target: ScrapeTarget, exposition: Exposition | None) -> Labels:
        # A server watched by address names its model itself, in mlops_model_info.
        served = (
            next(iter(exposition.values("mlops_model_info")), ({}, 0.0))[0] if exposition else {}
        )
        return {
            "instance": target.address,
            "deployment": target.deployment,
            "model": target.model or served.get("name", ""),
            "version": target.version or served.get("version", ""),
            "alias": target.alias,
        }
