"""Records of monitoring: health rows, snapshots, plot series, drift, alerts, scrape targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

AlertState = Literal["pending", "firing"]
Grouping = Literal["deployment", "version"]  # one row per serving target, or per model version


@dataclass(frozen=True)
class LatencySummary:
    """Request latency quantiles in seconds over a window (None: no requests in it)."""

    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True)
class FeatureDrift:
    """One input feature's drift against the training reference, as the server last computed it."""

    feature: str
    psi: float | None
    ks: float | None
    ks_pvalue: float | None
    drifted: bool  # PSI above its threshold, or the KS p-value below its threshold


@dataclass(frozen=True)
class Alert:
    """A Prometheus alert that is pending (waiting out its ``for:``) or firing."""

    name: str
    state: AlertState
    severity: str
    labels: dict[str, str]  # the alert's own labels (deployment, model, version, feature...)
    active_since: datetime | None


@dataclass(frozen=True)
class DeploymentHealth:
    """Traffic, errors, latency and drift of one deployment (or one model version) over a window.

    ``deployment`` and ``instance`` are empty for a row that sums a model version's deployments.
    Rates are per second; ratios are fractions of all answered requests (None: no requests).
    """

    deployment: str
    model: str
    version: int | None
    alias: str
    instance: str  # host:port that is scraped
    up: bool
    requests_total: float | None  # requests answered since the server started
    request_rate: float | None
    error_ratio: float | None  # 5xx answers: the server's fault
    client_error_ratio: float | None  # 4xx answers: the caller's fault
    latency: LatencySummary
    batch_size_mean: float | None  # rows per model call after micro-batching
    drift: tuple[FeatureDrift, ...]
    drift_window_rows: float | None
    alerts: tuple[Alert, ...] = ()
    error: str = ""  # why the target could not be read, when it could not
    # Realized quality of the row's version from labels sent back (POST /feedback), over the
    # server's window: accuracy and f1_macro, or mae and rmse; empty until labels come.
    quality: dict[str, float] = field(default_factory=dict)
    labelled_rows: float | None = None  # labelled rows in the quality window
    label_coverage: float | None = None  # share of recent rows that have a label

    @property
    def worst_drift(self) -> FeatureDrift | None:
        """The feature with the highest PSI (drifted features first)."""
        if not self.drift:
            return None
        return max(self.drift, key=lambda d: (d.drifted, d.psi if d.psi is not None else -1.0))


@dataclass(frozen=True)
class MonitorSnapshot:
    """What a metrics source saw at one moment, and which source it was."""

    source: str  # "prometheus http://..." or "direct scrape"
    window_seconds: float
    taken_at: datetime
    rows: tuple[DeploymentHealth, ...]
    alerts: tuple[Alert, ...] | None  # None: this source evaluates no alert rules


@dataclass(frozen=True)
class Series:
    """One time series of a range query, for plots: (unix seconds, value) points."""

    name: str
    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class MonitorHistory:
    """The recent figures of one deployment, for plots: one series per figure, oldest first.

    Series names: request_rate (req/s), error_ratio (5xx fraction), p50, p95, p99 (seconds).
    A figure with no point in the span (no requests, no data yet) has no series.
    """

    deployment: str  # the deployment's name, or host:port for a target without one
    source: str  # "prometheus range query" or "recorded snapshots"
    end: datetime
    minutes: float
    series: tuple[Series, ...]

    def points(self, name: str) -> tuple[tuple[float, float], ...]:
        """The (unix seconds, value) points of the series called ``name`` (empty if none)."""
        return next((s.points for s in self.series if s.name == name), ())


@dataclass(frozen=True)
class DriftThresholds:
    """The drift thresholds that apply to one model version, and where they were read."""

    psi: float  # PSI above this is drift
    ks_pvalue: float  # a KS p-value below this is drift
    source: str  # e.g. "drift_reference.json of run 1a2b3c4d", or "default (why)"


@dataclass(frozen=True)
class RetrainOutcome:
    """What retraining a deployment's model produced. Champion never moves here: a human
    promotes the challenger later (``mlops models promote`` or `p` on the Models screen)."""

    deployment: str
    model: str
    served_version: int | None
    served_run_id: str
    drift: str  # the drift figures that were read before training, one line
    run_id: str
    challenger_version: int
    comparison: str  # champion vs challenger on the evaluation data, one line
    champion_score: float
    challenger_score: float
    gate_passed: bool  # the challenger is no worse and the registry's gate let it through
    gate: str  # why the challenger alias moved, or why it did not
    log_path: str


@dataclass(frozen=True)
class ScrapeTarget:
    """A model server whose /metrics is read, by Prometheus or by the direct scrape."""

    url: str  # base URL, e.g. http://127.0.0.1:8080
    deployment: str = ""
    model: str = ""
    version: int | None = None
    alias: str = ""
    role: str = ""  # "canary" for a canary container beside the deployment's router, else ""
    # Where its figures are read under ``url``: a swarm canary's are the router's
    # /-/router/canary/metrics (its tasks are not reachable from here).
    metrics_path: str = "/metrics"

    @property
    def address(self) -> str:
        """host:port, as Prometheus names the target (its ``instance`` label)."""
        return self.url.split("://", 1)[-1].split("/", 1)[0]


@dataclass(frozen=True)
class TargetsFile:
    """The file_sd targets file the console keeps for Prometheus, after a refresh."""

    path: str
    targets: tuple[ScrapeTarget, ...]
    changed: bool  # False when the file already said exactly this
