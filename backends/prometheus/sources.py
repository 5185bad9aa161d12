"""What every metrics source answers, and the one function that turns its answers into rows.

Two sources answer the same question (``MetricsSource.snapshot``): ``PrometheusSource``
(``prometheus_source``) asks a Prometheus server; ``ScrapeSource`` (``scrape_source``) reads
each server's /metrics itself when there is no Prometheus. Both reduce to the same named
vectors (one value per row key, like a PromQL answer), and ``assemble_rows`` turns those into
``DeploymentHealth`` rows, so the two cannot drift apart in meaning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from backends.defaults import DEFAULT_KS_PVALUE, DEFAULT_PSI
from backends.prometheus.queries import (
    Scope,
    group_labels,
)
from backends.records import (
    Alert,
    DeploymentHealth,
    FeatureDrift,
    Grouping,
    LatencySummary,
    MonitorSnapshot,
    version_number,
)

__all__ = [
    "FEATURE_GAUGES",
    "HISTORY_KINDS",
    "HistoryKind",
    "Labels",
    "MetricsSource",
    "Vector",
    "assemble_rows",
]

PSI_THRESHOLD = DEFAULT_PSI
KS_PVALUE_THRESHOLD = DEFAULT_KS_PVALUE
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
HistoryKind = Literal[
    "request_rate",
    "error_ratio",
    "p50",
    "p95",
    "p99",
    "batch_size_mean",
    "psi",
    "ks_pvalue",
    "accuracy",
]
HISTORY_KINDS: tuple[str, ...] = get_args(HistoryKind)
FEATURE_GAUGES = {
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
    quality: dict[str, float] = field(default_factory=dict)
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
    batch_size_mean, drift_window_rows, labelled_rows, label_coverage, the per-feature psi, ks,
    ks_pvalue (label ``feature``) and quality (label ``metric``). A series labelled with the
    ``model_version`` that answered its rows counts only for the row of that version. A row
    exists for every key that appears in any vector (or in ``errors``).
    """
    keys = group_labels(per)
    rows: dict[tuple[str, ...], _Row] = {}
    for name, vector in vectors.items():
        for labels, value in vector:
            answered_by = labels.get("model_version")
            if answered_by is not None and answered_by != labels.get("version", answered_by):
                continue  # an earlier version's rows, read back from the log: not this row's
            row = rows.setdefault(tuple(labels.get(k, "") for k in keys), _Row())
            if name in FEATURE_GAUGES:
                row.features.setdefault(labels.get("feature", ""), {})[name] = value
            elif name == "quality":
                row.quality[labels.get("metric", "")] = value
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
                version=version_number(labels.get("version")),
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
                quality={k: q for k, q in sorted(row.quality.items()) if math.isfinite(q)},
                labelled_rows=v.get("labelled_rows"),
                label_coverage=v.get("label_coverage"),
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
