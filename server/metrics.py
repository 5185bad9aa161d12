"""The server's Prometheus metrics (names fixed in DESIGN.md; base units; `mlops_` prefix)."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

# 1 ms to 5 s: a tree model answers in ~1-10 ms, an overloaded one in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MAX_LABELS = 50  # cap label cardinality: a regressor's outputs must not become label values


class ServerMetrics:
    """All metrics in one registry per app (so tests can run several apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The standard process_*, python_info and python_gc_* series every Python exporter
        # has (what a dashboard's "memory / CPU / file descriptors of the service" reads). The
        # default registry's own collectors, registered again here: they hold no state of their
        # own, so several apps in one process (the tests) each report the same process.
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(standard)
        self.request_duration = Histogram(
            "mlops_request_duration_seconds",
            "Time to answer a request.",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "mlops_requests", "Requests answered.", ["endpoint", "status"], registry=r
        )
        self.prediction_errors = Counter(
            "mlops_prediction_errors",
            "Requests whose prediction failed (client or model).",
            ["endpoint", "type"],
            registry=r,
        )
        self.batch_size = Histogram(
            "mlops_batch_size",
            "Rows per model call after micro-batching.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "mlops_predictions",
            "Predictions made, by predicted label for classifiers.",
            ["label"],
            registry=r,
        )
        self.feature_psi = Gauge(
            "mlops_feature_psi",
            "Population stability index of recent inputs.",
            ["feature"],
            registry=r,
        )
        self.feature_ks = Gauge(
            "mlops_feature_ks", "Two-sample KS statistic of recent inputs.", ["feature"], registry=r
        )
        self.feature_ks_pvalue = Gauge(
            "mlops_feature_ks_pvalue",
            "p-value of the two-sample KS test.",
            ["feature"],
            registry=r,
        )
        # Read at scrape time from the app's own count (no cost per request).
        self.requests_in_flight = Gauge(
            "mlops_requests_in_flight",
            "Prediction requests admitted and not yet answered.",
            registry=r,
        )
        self.drift_window_rows = Gauge(
            "mlops_drift_window_rows", "Rows in the drift window.", registry=r
        )
        self.drift_window_age = Gauge(
            "mlops_drift_window_age_seconds",
            "Seconds since the newest row entered the drift window (NaN: none yet).",
            registry=r,
        )
        self.loop_lag = Histogram(
            "mlops_event_loop_lag_seconds",
            "How late the event loop woke a 50 ms sleeper.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.model_info = Gauge(
            "mlops_model_info",
            "The model being served (value 1).",
            ["name", "version", "run_id"],
            registry=r,
        )
        self.feedback = Counter(
            "mlops_feedback",
            "Labels received on POST /feedback, by outcome.",
            ["outcome"],
            registry=r,
        )
        # `model_version`, not `version`: the version that answered the labelled rows may be
        # an earlier one than the server's own (read back from the log after a switch), and a
        # `version` label would clash with the scrape target's (Prometheus would rename it).
        self.label_coverage = Gauge(
            "mlops_label_coverage_ratio",
            "Share of the remembered recent rows of a version that have a label.",
            ["model_version"],
            registry=r,
        )
        self.model_quality = Gauge(
            "mlops_model_quality",
            "Realized quality over the latest labelled rows of a version.",
            ["model_version", "metric", "window"],
            registry=r,
        )
        self.labelled_rows = Gauge(
            "mlops_model_quality_rows",
            "Labelled rows in a version's quality window.",
            ["model_version"],
            registry=r,
        )
        self.model_validation = Gauge(
            "mlops_model_validation",
            "The served version's own held-out metrics, from its run (baked into the image).",
            ["model_version", "metric"],
            registry=r,
        )
        self.log_rows = Counter(
            "mlops_prediction_log_rows",
            "Rows written to the prediction log (kind: predictions or feedback).",
            ["kind"],
            registry=r,
        )
        self.log_dropped = Counter(
            "mlops_prediction_log_dropped",
            "Rows the prediction log did not keep, by reason.",
            ["reason"],
            registry=r,
        )
        self.log_degraded = Gauge(
            "mlops_prediction_log_degraded",
            "1 while the prediction log cannot write (a full or read-only volume).",
            registry=r,
        )
        self._labels: set[str] = set()

    def count_predictions(self, predictions: list[object]) -> None:
        for value in predictions:
            if isinstance(value, bool | int | str):
                label = str(value)
                if label not in self._labels and len(self._labels) >= MAX_LABELS:
                    label = "other"
                self._labels.add(label)
            else:
                label = ""
            self.predictions.labels(label=label).inc()

    def withdraw_drift(self) -> bool:
        """Remove every feature's drift gauges; whether there were any."""
        had = any(
            sample.value == sample.value  # not NaN
            for family in self.feature_psi.collect()
            for sample in family.samples
        )
        for gauge in (self.feature_psi, self.feature_ks, self.feature_ks_pvalue):
            gauge.clear()
        return had

    def set_model(self, name: str, version: str, run_id: str) -> None:
        self.model_info.clear()
        self.model_info.labels(name=name, version=version, run_id=run_id).set(1)
