"""Runs in MLflow's REST JSON shape → our records (``RunSummary``, ``DatasetRef``...).

Pure functions, no I/O: the unit tests feed them JSON as the server sends it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from backends.records import DatasetRef, LoggedModelRef, MetricPoint, RunSummary

__all__ = [
    "DATASET_CONTEXT_TAG",
    "GIT_COMMIT_TAG",
    "GIT_REPO_TAG",
    "RUN_NAME_TAG",
    "SOURCE_NAME_TAG",
    "as_float",
    "datasets_of",
    "from_ms",
    "models_from_history_tag",
    "point_from_json",
    "summary_from_json",
]

Json = dict[str, Any]

RUN_NAME_TAG = "mlflow.runName"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_REPO_TAG = "mlflow.source.git.repoURL"
SOURCE_NAME_TAG = "mlflow.source.name"
DATASET_CONTEXT_TAG = "mlflow.data.context"
LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"


def from_ms(ms: Any) -> datetime | None:
    """Epoch milliseconds (int, or a string as proto JSON sends int64) → aware UTC datetime."""
    if ms in (None, "", 0, "0"):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def as_float(value: Any) -> float:
    """A metric value; proto JSON spells NaN and infinities as strings."""
    return float(value) if value is not None else math.nan


def _pairs(items: list[Json] | None) -> dict[str, str]:
    return {str(i["key"]): str(i.get("value", "")) for i in items or []}


def datasets_of(run: Json) -> tuple[DatasetRef, ...]:
    """The dataset inputs of a run: name, digest, context tag, source type."""
    found = []
    for entry in (run.get("inputs") or {}).get("dataset_inputs") or []:
        dataset = entry.get("dataset") or {}
        context = _pairs(entry.get("tags")).get(DATASET_CONTEXT_TAG)
        found.append(
            DatasetRef(
                name=str(dataset.get("name", "")),
                digest=str(dataset.get("digest", "")),
                context=context,
                source_type=dataset.get("source_type") or None,
            )
        )
    return tuple(found)


def summary_from_json(run: Json) -> RunSummary:
    """One run from the REST API (``{"info", "data", "inputs"}``) as a RunSummary."""
    info = run.get("info") or {}
    data = run.get("data") or {}
    tags = _pairs(data.get("tags"))
    metrics = {str(m["key"]): as_float(m.get("value")) for m in data.get("metrics") or []}
    run_id = str(info.get("run_id") or info.get("run_uuid"))
    return RunSummary(
        run_id=run_id,
        experiment_id=str(info.get("experiment_id", "")),
        name=str(info.get("run_name") or tags.get(RUN_NAME_TAG) or ""),
        status=str(info.get("status", "")),
        start_time=from_ms(info.get("start_time")),
        end_time=from_ms(info.get("end_time")),
        user=str(info.get("user_id") or tags.get("mlflow.user") or ""),
        params=_pairs(data.get("params")),
        metrics=metrics,
        tags=tags,
        datasets=datasets_of(run),
        lifecycle_stage=str(info.get("lifecycle_stage") or "active"),
    )


def point_from_json(metric: Json) -> MetricPoint:
    """One entry of a metric history."""
    stamp = from_ms(metric.get("timestamp")) or datetime.fromtimestamp(0, tz=UTC)
    return MetricPoint(
        step=int(metric.get("step") or 0), timestamp=stamp, value=as_float(metric.get("value"))
    )


def models_from_history_tag(run_id: str, tags: dict[str, str]) -> list[LoggedModelRef]:
    """Models recorded in the pre-MLflow-3 ``mlflow.log-model.history`` tag."""
    try:
        entries = json.loads(tags.get(LOG_MODEL_HISTORY_TAG, "[]"))
    except ValueError:
        return []
    found = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("artifact_path"):
            continue
        path = str(entry["artifact_path"])
        found.append(
            LoggedModelRef(
                name=path,
                uri=f"runs:/{run_id}/{path}",
                model_id=entry.get("model_id") or None,
                flavors=tuple(sorted(entry.get("flavors") or {})),
            )
        )
    return found
