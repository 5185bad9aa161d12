"""Runs side by side: params that differ, metrics with the best marked, metric histories.

The direction of a metric (higher or lower is better) is common knowledge for most names
(``metric_direction``); a history is downsampled so that peaks survive (``downsample``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Literal

from backends.errors import InvalidInput, NotFound
from backends.mlflow.run_mapping import (
    point_from_json,
    summary_from_json,
)
from backends.mlflow.run_source import RunSource, source_for
from backends.mlflow.runs import _fetch_run, _parallel
from backends.records import (
    MetricPoint,
    MetricRow,
    MetricSeries,
    ParamRow,
    RunComparison,
    RunSummary,
)

__all__ = [
    "COMPARE_MAX",
    "Direction",
    "compare_runs",
    "compare_summaries",
    "downsample",
    "metric_direction",
    "metric_histories",
    "metric_history",
]

Direction = Literal["max", "min", "unknown"]
COMPARE_MAX = 200
HISTORY_POINTS = 500  # a plot a few hundred cells wide gains nothing from more

# Metric names whose direction is common knowledge, matched per word ("val_loss", "eval/f1").
_LOWER_IS_BETTER = {
    "loss", "error", "err", "rmse", "mse", "mae", "mape", "smape", "rmsle", "logloss",
    "perplexity", "ppl", "wer", "cer", "latency", "duration", "time", "seconds", "fpr", "fnr",
    "brier", "hamming", "nll", "deviance", "cost", "regret",
}  # fmt: skip
_HIGHER_IS_BETTER = {
    "accuracy", "acc", "f1", "auc", "roc", "pr", "precision", "recall", "r2", "map", "ndcg",
    "mrr", "bleu", "rouge", "rougel", "meteor", "iou", "dice", "sensitivity", "specificity",
    "tpr", "tnr", "kappa", "mcc", "top1", "top5", "throughput", "reward", "score", "jaccard",
}  # fmt: skip

# ------------------------------------------------------------------ metric histories


def downsample(points: Sequence[MetricPoint], max_points: int) -> list[MetricPoint]:
    """At most ``max_points`` points that keep the shape: first, last, and each bucket's min and
    max (peaks survive, unlike taking every n-th point)."""
    if max_points < 2:
        raise InvalidInput("max_points must be at least 2")
    if len(points) <= max_points:
        return list(points)
    inner = points[1:-1]
    buckets = max(1, (max_points - 2) // 2)
    size = len(inner) / buckets
    kept: list[MetricPoint] = [points[0]]
    for b in range(buckets):
        chunk = inner[int(b * size) : int((b + 1) * size)]
        finite = [p for p in chunk if not math.isnan(p.value)]
        if not finite:
            continue
        low = min(finite, key=lambda p: p.value)
        high = max(finite, key=lambda p: p.value)
        kept += sorted({id(low): low, id(high): high}.values(), key=lambda p: (p.step, p.timestamp))
    kept.append(points[-1])
    return kept


def _series(src: RunSource, run_id: str, key: str, max_points: int | None) -> MetricSeries:
    points = sorted(
        (point_from_json(m) for m in src.metric_history(run_id, key)),
        key=lambda p: (p.step, p.timestamp),
    )
    kept = points if max_points is None else downsample(points, max_points)
    return MetricSeries(
        run_id=run_id,
        key=key,
        points=tuple(kept),
        total_points=len(points),
        downsampled=len(kept) < len(points),
    )


def metric_history(
    tracking_uri: str,
    run_id: str,
    key: str,
    *,
    max_points: int | None = HISTORY_POINTS,
    source: RunSource | None = None,
) -> MetricSeries:
    """A metric's full step history for one run (downsampled to ``max_points``; None keeps all)."""
    src = source or source_for(tracking_uri)
    try:
        return _series(src, run_id, key, max_points)
    finally:
        if source is None:
            src.close()


def metric_histories(
    tracking_uri: str,
    run_ids: Sequence[str],
    keys: Sequence[str],
    *,
    max_points: int | None = HISTORY_POINTS,
    source: RunSource | None = None,
) -> dict[str, tuple[MetricSeries, ...]]:
    """Histories of ``keys`` for every run (fetched in parallel): metric → one series per run."""
    src = source or source_for(tracking_uri)
    try:
        pairs = [(k, r) for k in keys for r in run_ids]
        series = _parallel(lambda kr: _series(src, kr[1], kr[0], max_points), pairs)
    finally:
        if source is None:
            src.close()
    out: dict[str, list[MetricSeries]] = {k: [] for k in keys}
    for s in series:
        out[s.key].append(s)
    return {k: tuple(v) for k, v in out.items()}


# ------------------------------------------------------------------ comparing


def metric_direction(name: str, overrides: dict[str, Direction] | None = None) -> Direction:
    """Whether higher or lower is better for a metric, from its name (``overrides`` win)."""
    if overrides and name in overrides:
        return overrides[name]
    words = {w for w in re.split(r"[^a-z0-9]+", name.lower()) if w}
    lower = bool(words & _LOWER_IS_BETTER)
    higher = bool(words & _HIGHER_IS_BETTER)
    if lower and not higher:
        return "min"
    if higher and not lower:
        return "max"
    return "unknown"


def _best(values: Sequence[float | None], direction: Direction) -> tuple[int, ...]:
    usable = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if direction == "unknown" or len(usable) < 2:
        return ()
    target = (max if direction == "max" else min)(v for _, v in usable)
    return tuple(i for i, v in usable if v == target)


def compare_summaries(
    runs: Sequence[RunSummary],
    *,
    metrics: Sequence[str] | None = None,
    directions: dict[str, Direction] | None = None,
    histories: dict[str, tuple[MetricSeries, ...]] | None = None,
) -> RunComparison:
    """The comparison of already-fetched runs (pure: the unit tests call it directly)."""
    param_keys = sorted({k for r in runs for k in r.params})
    differ: list[ParamRow] = []
    agree: list[ParamRow] = []
    for key in param_keys:
        row = ParamRow(key, tuple(r.params.get(key) for r in runs))
        (differ if len(set(row.values)) > 1 else agree).append(row)
    metric_keys = list(metrics) if metrics else sorted({k for r in runs for k in r.metrics})
    rows = []
    for key in metric_keys:
        values = tuple(r.metrics.get(key) for r in runs)
        direction = metric_direction(key, directions)
        rows.append(MetricRow(key, values, direction, _best(values, direction)))
    data = [frozenset((d.name, d.digest) for d in r.datasets) for r in runs]
    recorded = {d for d in data if d}
    # Different digests answer "no" even if some runs recorded nothing; "yes" needs them all.
    same_data = False if len(recorded) > 1 else (True if recorded and all(data) else None)
    return RunComparison(
        runs=tuple(runs),
        params_differ=tuple(differ),
        params_agree=tuple(agree),
        metrics=tuple(rows),
        same_data=same_data,
        histories=histories or {},
    )


def compare_runs(
    tracking_uri: str,
    run_ids: Sequence[str],
    *,
    metrics: Sequence[str] | None = None,
    directions: dict[str, Direction] | None = None,
    history: bool = True,
    max_points: int | None = HISTORY_POINTS,
    source: RunSource | None = None,
) -> RunComparison:
    """Compare 2 to 200 runs; NotFound lists every unknown id at once."""
    ids = list(run_ids)
    if not 2 <= len(ids) <= COMPARE_MAX:
        raise InvalidInput(f"compare takes 2 to {COMPARE_MAX} runs, not {len(ids)}")
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise InvalidInput(f"run given more than once: {', '.join(twice)}")
    src = source or source_for(tracking_uri)
    try:

        def fetch(run_id: str) -> RunSummary | None:
            try:
                return summary_from_json(_fetch_run(src, run_id))
            except (NotFound, InvalidInput):
                return None

        fetched = _parallel(fetch, ids)
        missing = [i for i, r in zip(ids, fetched, strict=True) if r is None]
        if missing:
            raise NotFound(f"unknown run id{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        runs = [r for r in fetched if r is not None]
        comparison = compare_summaries(runs, metrics=metrics, directions=directions)
        if not history:
            return comparison
        # Only runs that logged a metric have a history to fetch; the others get an empty one.
        pairs = [(m.key, r.run_id) for m in comparison.metrics for r in runs if m.key in r.metrics]
        fetched_series = _parallel(lambda kr: _series(src, kr[1], kr[0], max_points), pairs)
        by_pair = {(s.key, s.run_id): s for s in fetched_series}
        series = {
            m.key: tuple(
                by_pair.get((m.key, r.run_id)) or MetricSeries(r.run_id, m.key, (), 0, False)
                for r in runs
            )
            for m in comparison.metrics
        }
        return compare_summaries(runs, metrics=metrics, directions=directions, histories=series)
    finally:
        if source is None:
            src.close()
