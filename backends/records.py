"""Our own frozen records: the only types the console sees from a backend.

Add a record here when a backend starts returning it; keep fields plain (str, int, float,
datetime, tuples, dicts of those) so `--json` output and the UI need no SDK knowledge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

# --------------------------------------------------------------------------- model registry

AliasAction = Literal["promote", "rollback", "manual", "deploy"]


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model; ``aliases`` maps alias → version, ``tags`` omits mlops bookkeeping."""

    name: str
    description: str
    aliases: dict[str, int]
    tags: dict[str, str]
    latest_version: int | None
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model, with its source run's metrics."""

    name: str
    version: int
    run_id: str | None
    metrics: dict[str, float]
    aliases: tuple[str, ...]
    tags: dict[str, str]
    created: datetime
    status: str
    stage: str | None  # legacy MLflow stage (deprecated): shown when set, never relied on
    source: str


@dataclass(frozen=True)
class AliasState:
    """What an operator saw of an alias: its version and the newest history event behind it."""

    model: str
    alias: str
    version: int | None
    last_event_id: str | None


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias. ``recorded`` is False for a manual move detected but not yet saved."""

    id: str
    model: str
    alias: str
    seq: int
    action: AliasAction
    from_version: int | None
    to_version: int | None
    who: str
    at: datetime
    reason: str
    recorded: bool = True


@dataclass(frozen=True)
class GateCheck:
    """One check of a promotion gate and what it found."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    """The promotion gate for one version against the version that holds ``alias`` now."""

    model: str
    version: int
    alias: str
    checks: tuple[GateCheck, ...]
    passed: bool


# --------------------------------------------------------------------------- tracking: runs


@dataclass(frozen=True)
class DatasetRef:
    """A data set a run used: its name and digest (equal digests mean the same data)."""

    name: str
    digest: str
    context: str | None = None  # "training", "evaluation"... (the mlflow.data.context tag)
    source_type: str | None = None


@dataclass(frozen=True)
class ProjectParameter:
    """A parameter of an MLflow Project's entry point, as its MLproject file declares it."""

    name: str
    type: str  # string, float, int, path, uri (MLflow's names)
    default: str | None  # None: the run must be given a value


@dataclass(frozen=True)
class Experiment:
    """An active experiment; ``updated`` is MLflow's last-update time (None if it has none)."""

    experiment_id: str
    name: str
    updated: datetime | None
    tags: dict[str, str]


@dataclass(frozen=True)
class RunSummary:
    """One run as a listing shows it: identity, status, times, params and latest metrics."""

    run_id: str
    experiment_id: str
    name: str
    status: str  # RUNNING, SCHEDULED, FINISHED, FAILED, KILLED
    start_time: datetime | None
    end_time: datetime | None
    user: str
    params: dict[str, str]
    metrics: dict[str, float]  # the latest value of each metric
    tags: dict[str, str]
    datasets: tuple[DatasetRef, ...] = ()
    lifecycle_stage: str = "active"

    @property
    def duration_seconds(self) -> float | None:
        """Wall time from start to end (None while it runs)."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()


@dataclass(frozen=True)
class RunListing:
    """A page of runs and where it came from: the local index (with its sync times) or the server.

    ``synced_at`` is when the index last matched the server for new, running, finished and
    deleted runs; ``verified_at`` is its last full resync, the only one that also sees edits to
    runs that had finished before (a tag or a metric logged late). From the server directly,
    both are the time of the query.
    """

    runs: tuple[RunSummary, ...]
    experiment_id: str
    experiment_name: str
    source: Literal["index", "server"]
    synced_at: datetime
    verified_at: datetime | None
    matched: int | None  # runs matching the filter (None when the server was asked a page only)
    more: bool  # more runs match than were returned
    note: str = ""  # why the server was asked directly, when it was
    index_pending: bool = False  # a full sync of the index is due: run it, then list again


@dataclass(frozen=True)
class ArtifactEntry:
    """One file or directory in a run's artifact store."""

    path: str
    is_dir: bool
    size: int | None


@dataclass(frozen=True)
class LoggedModelRef:
    """A model a run logged (an MLflow 3 logged model, or a pre-3 ``log-model.history`` entry)."""

    name: str
    uri: str  # models:/<model_id> or runs:/<run_id>/<path>
    model_id: str | None
    flavors: tuple[str, ...]


@dataclass(frozen=True)
class RunDetail:
    """Everything `runs show` prints about one run."""

    run: RunSummary
    experiment_name: str
    artifact_uri: str
    artifacts: tuple[ArtifactEntry, ...]
    models: tuple[LoggedModelRef, ...]
    git_commit: str | None
    source: str | None  # mlflow.source.name: the project or script that ran


@dataclass(frozen=True)
class MetricPoint:
    """One logged value of a metric."""

    step: int
    timestamp: datetime
    value: float


@dataclass(frozen=True)
class MetricSeries:
    """A metric's history for one run, downsampled for plotting when long."""

    run_id: str
    key: str
    points: tuple[MetricPoint, ...]
    total_points: int  # before downsampling
    downsampled: bool


@dataclass(frozen=True)
class ParamRow:
    """One param across compared runs (None where a run lacks it)."""

    key: str
    values: tuple[str | None, ...]


@dataclass(frozen=True)
class MetricRow:
    """One metric across compared runs, with the best run(s) marked when the direction is known."""

    key: str
    values: tuple[float | None, ...]
    direction: Literal["max", "min", "unknown"]
    best: tuple[int, ...]  # indexes into RunComparison.runs


@dataclass(frozen=True)
class RunComparison:
    """Runs side by side: differing params, agreeing params, metrics, data sets, histories."""

    runs: tuple[RunSummary, ...]
    params_differ: tuple[ParamRow, ...]
    params_agree: tuple[ParamRow, ...]
    metrics: tuple[MetricRow, ...]
    same_data: bool | None  # None when it cannot be told (a run recorded no data set)
    histories: dict[str, tuple[MetricSeries, ...]]  # metric → one series per run (same order)


@dataclass(frozen=True)
class ServingImage:
    """A serving image we built: one model version baked in (labels org.mlops-console.*)."""

    id: str
    tags: tuple[str, ...]
    model: str
    version: str
    alias: str
    run_id: str
    size_bytes: int
    created: datetime | None


@dataclass(frozen=True)
class Deployment:
    """A running (or stopped) serving container: which model version answers where."""

    name: str
    model: str
    version: str
    alias: str
    run_id: str
    image: str
    container_id: str
    state: str  # Docker's state: running, exited, restarting, ...
    health: str  # healthy, unhealthy, starting, or none (no healthcheck)
    host: str
    port: int | None
    started_at: datetime | None
    follow_alias: bool = False

    @property
    def url(self) -> str | None:
        """Base URL of the deployment's server, when it publishes a port."""
        return f"http://{self.host}:{self.port}" if self.port else None


# --------------------------------------------------------------------------- monitoring

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
    version: str
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
    served_version: str
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
    version: str = ""
    alias: str = ""

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


# ---------------------------------------------------------------------- images and deploys


@dataclass(frozen=True)
class ResolvedVersion:
    """A model reference pinned to one registered version."""

    name: str
    version: str
    run_id: str
    alias: str  # the alias it was resolved through, if any
    created: datetime | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class BuildOutcome:
    """An image built for one version; ``cached``: it is the very image that was there before."""

    image: ServingImage
    resolved: ResolvedVersion
    cached: bool


@dataclass(frozen=True)
class DeployPlan:
    """What a deploy will do, decided before anything changes (a confirmation shows it)."""

    reference: str  # as the operator wrote it
    resolved: ResolvedVersion
    name: str
    host: str
    port: int
    follow_alias: bool
    current: Deployment | None  # the deployment it replaces; None: a new one
    image: ServingImage | None  # None: no image of that version yet, it is built first

    @property
    def replaces(self) -> str | None:
        """The version served now under this name (None for a new deployment)."""
        return self.current.version if self.current is not None else None


@dataclass(frozen=True)
class DeployOutcome:
    """A deploy that happened: what serves now, what it replaced, and whether it built."""

    deployment: Deployment
    replaced: str | None
    image: ServingImage
    built: bool
    warning: str = ""  # the switch worked; its history entry or the targets file did not


@dataclass(frozen=True)
class RollbackPlan:
    """What a deployment rollback will do, decided before anything changes."""

    name: str
    model: str
    from_version: str  # what serves now (for an alias follower: what the alias names now)
    to_version: str
    alias: str = ""  # the followed alias that moves back; empty: a container switch
    image_missing: bool = False  # the older version's image must be built first


@dataclass(frozen=True)
class RollbackOutcome:
    """A deployment rollback: a container switch (``deployment``) or, for a deployment that
    follows an alias, an alias move (``alias_event``; None when the alias was already there)."""

    name: str
    model: str
    from_version: str | None
    to_version: str | None
    deployment: Deployment | None = None
    alias: str = ""
    alias_event: AliasEvent | None = None
    warning: str = ""

    @property
    def via_alias(self) -> bool:
        return bool(self.alias)
