"""Numbers without Prometheus (the embedded default): each server's /metrics read twice and
the difference turned into the numbers Prometheus would give: rates from counter increases,
quantiles from bucket increases computed the way Prometheus does. No alert rules."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import httpx

from backends.errors import InvalidInput, Unavailable
from backends.prometheus.exposition import Exposition, SampleKey, parse_exposition
from backends.prometheus.queries import (
    Scope,
    bucket_quantile,
    counter_increase,
    group_labels,
)
from backends.prometheus.sources import (
    FEATURE_GAUGES,
    KS_PVALUE_THRESHOLD,
    PSI_THRESHOLD,
    QUANTILES,
    Labels,
    Vector,
    assemble_rows,
)
from backends.records import (
    Grouping,
    MonitorSnapshot,
    ScrapeTarget,
)

__all__ = ["ScrapeSource"]


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
        for name, metric in FEATURE_GAUGES.items():
            pick = min if name == "ks_pvalue" else max
            per_feature: dict[str, list[float]] = {}
            for r in members:
                for lbs, value in r.current.values(metric):
                    per_feature.setdefault(lbs.get("feature", ""), []).append(value)
            for feature, values in per_feature.items():
                put(name, {**labels, "feature": feature}, pick(values))
        for name, metric, extra in QUALITY_GAUGES:
            for r in members:
                for lbs, value in r.current.values(metric):
                    kept = {k: lbs.get(k, "") for k in ("model_version", *extra)}
                    put(name, {**labels, **kept}, value)
    return vectors


QUALITY_GAUGES = (
    ("quality", "mlops_model_quality", ("metric",)),
    ("labelled_rows", "mlops_model_quality_rows", ()),
    ("label_coverage", "mlops_label_coverage_ratio", ()),
)


def _may_admit(scope: Scope, target: ScrapeTarget) -> bool:
    """False when the target's own labels already rule it out (no need to scrape it)."""
    known = {
        "instance": target.address,
        "deployment": target.deployment,
        "model": target.model,
        "version": str(target.version or ""),
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
        url = target.url.rstrip("/") + target.metrics_path
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
            "version": str(target.version or "") or served.get("version", ""),
            "alias": target.alias,
        }
