"""Records of the tracking server: experiments, runs, their data sets, metrics and comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


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
class TrainingOutcome:
    """How a training ended: its run (None if MLflow never created one), status and exit code."""

    run_id: str | None
    status: str | None
    exit_code: int
    log_path: str
