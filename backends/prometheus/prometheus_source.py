"""Numbers from a Prometheus server (through prometheus-api-client): rates over a window,
``histogram_quantile`` over bucket rates, the drift gauges, the alerts its rules raise, and
range queries for plots."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from backends.errors import BackendError, InvalidInput, Unavailable
from backends.prometheus.queries import (
    Queries,
    Scope,
    duration_seconds,
    matcher,
    selector,
)
from backends.prometheus.sources import (
    HISTORY_KINDS,
    KS_PVALUE_THRESHOLD,
    PSI_THRESHOLD,
    QUANTILES,
    HistoryKind,
    Vector,
    assemble_rows,
)
from backends.records import (
    Alert,
    Grouping,
    MonitorSnapshot,
    Series,
)

__all__ = ["PromQueryClient", "PrometheusSource", "connect_prometheus"]


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
            "quality": self._vector(q.per_model_version("mlops_model_quality", "metric")),
            "labelled_rows": self._vector(q.per_model_version("mlops_model_quality_rows")),
            "label_coverage": self._vector(q.per_model_version("mlops_label_coverage_ratio")),
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
            "accuracy": lambda: q.per_model_version(
                "mlops_model_quality", where=[matcher("metric", "accuracy")]
            ),
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
                labels = dict(item.get("metric", {}))
                answered_by = labels.get("model_version")
                if answered_by is not None and answered_by != labels.get("version", answered_by):
                    continue  # an earlier version's labelled rows: not this row's quality
                series.append(Series(name=kind, labels=labels, points=points))
        return tuple(sorted(series, key=lambda s: sorted(s.labels.items())))

    def vector(self, query: str) -> Vector:
        """An instant query's result: each series' labels and value (Unavailable when
        Prometheus does not answer, InvalidInput when it refuses the query)."""
        return self._vector(query)

    def targets_up(self, scope: Scope) -> bool:
        """Whether Prometheus has scraped a target in ``scope`` successfully (its ``up`` is 1),
        in whatever job reads it."""
        return any(value == 1 for _, value in self._vector(selector("up", scope.matchers())))

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
