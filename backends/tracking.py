"""Runs: list them fast at any scale, show one, compare many, read metric histories.

Everything returns ``backends.records`` and raises ``backends.errors``. Reads go through a
``RunSource`` (MLflow's REST API over httpx for a tracking server, ``MlflowClient`` for a local
store); listings go through the local run index (``backends.run_index``) unless asked not to.
Training itself (the MLflow Project subprocess) lives in ``backends.training``.
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from backends.errors import BackendError, InvalidInput, NotFound
from backends.records import (
    ArtifactEntry,
    Experiment,
    LoggedModelRef,
    MetricPoint,
    MetricRow,
    MetricSeries,
    ParamRow,
    RunComparison,
    RunDetail,
    RunListing,
    RunSummary,
)
from backends.run_filter import Clause, OrderKey, Unsupported, parse_filter, parse_order_by
from backends.run_index import RunIndex, full_sync_due
from backends.run_index import sync as sync_index
from backends.run_mapping import (
    GIT_COMMIT_TAG,
    SOURCE_NAME_TAG,
    models_from_history_tag,
    point_from_json,
    summary_from_json,
)
from backends.run_source import RunSource, source_for

__all__ = [
    "COMPARE_MAX",
    "Direction",
    "compare_runs",
    "downsample",
    "get_run",
    "list_experiments",
    "list_runs",
    "metric_direction",
    "metric_histories",
    "metric_history",
    "show_run",
    "sync_runs",
]

Direction = Literal["max", "min", "unknown"]
SyncMode = Literal["now", "full", "defer", "later", "none"]  # see list_runs
SYNC_MODES: tuple[SyncMode, ...] = ("now", "full", "defer", "later", "none")
COMPARE_MAX = 200
HISTORY_POINTS = 500  # a plot a few hundred cells wide gains nothing from more
SERVER_PAGE = 1000
_PARALLEL = 8

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

T = TypeVar("T")
R = TypeVar("R")


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _parallel(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(_PARALLEL, len(items))) as pool:
        return list(pool.map(fn, items))


# ------------------------------------------------------------------ listing

COLD_INDEX = "the local run index has not been built for this experiment"


def sync_runs(tracking_uri: str, experiment: str, *, source: RunSource | None = None) -> None:
    """Bring the local index of ``experiment`` up to date, fully if due (the slow part of a
    listing with ``sync="defer"`` or ``"later"`` put off)."""
    src = source or source_for(tracking_uri)
    try:
        found = src.experiment(experiment)
        index = RunIndex.for_uri(tracking_uri)
        try:
            sync_index(src, index, str(found["experiment_id"]), str(found["name"]))
        finally:
            index.close()
    except (OSError, sqlite3.Error) as exc:
        raise BackendError(f"local run index: {exc}", title="Run index error") from exc
    finally:
        if source is None:
            src.close()


def list_experiments(tracking_uri: str, *, source: RunSource | None = None) -> list[Experiment]:
    """Every active experiment, most recently updated first."""
    src = source or source_for(tracking_uri)
    try:
        return [_experiment(raw) for raw in src.experiments()]
    finally:
        if source is None:
            src.close()


def _experiment(raw: dict[str, Any]) -> Experiment:
    updated = raw.get("last_update_time")
    return Experiment(
        experiment_id=str(raw["experiment_id"]),
        name=str(raw["name"]),
        updated=datetime.fromtimestamp(int(updated) / 1000, tz=UTC) if updated else None,
        tags={str(t["key"]): str(t.get("value", "")) for t in raw.get("tags") or []},
    )


def list_runs(
    tracking_uri: str,
    experiment: str,
    *,
    filter_string: str = "",
    order_by: Sequence[str] = (),
    max_results: int | None = 50,
    offset: int = 0,
    use_index: bool = True,
    sync: SyncMode = "now",
    source: RunSource | None = None,
    index: RunIndex | None = None,
    on_full_sync: Callable[[], None] | None = None,
) -> RunListing:
    """Runs of ``experiment`` (name or id) matching an MLflow filter, in MLflow's order.

    With ``use_index`` (the default) the local index answers, synced with the server first as
    ``sync`` says; ``on_full_sync`` is told before a full sync starts. ``max_results=None``
    lists every match; ``offset`` skips that many matches (a screen pages through 10,000 runs).

    ``sync``:
    - ``"now"``: sync incrementally (fully when never built, or when the last full resync is
      older than MLOPS_INDEX_MAX_AGE), then answer. What the CLI does.
    - ``"full"``: a full resync first (``mlops runs list --refresh``).
    - ``"defer"``: answer at once: an incremental sync only; a full sync that is due is left to a
      later ``sync_runs`` in the background and ``index_pending`` is set.
    - ``"later"``: answer from the index as it stands, with no sync at all (a few searches:
      ~0.2 s at 10,000 runs), and set ``index_pending``: the caller shows these rows, runs
      ``sync_runs`` and lists again.
    - ``"none"``: no sync and nothing pending: the next page of the snapshot the first page saw.

    Except for ``"now"`` and ``"full"``, an index never built is not built here: the server
    answers, and ``index_pending`` is set.
    """
    if max_results is not None and max_results < 1:
        raise InvalidInput("max_results must be at least 1")
    if offset < 0:
        raise InvalidInput("offset must be at least 0")
    if sync not in SYNC_MODES:
        raise InvalidInput(f"sync must be one of {', '.join(SYNC_MODES)}, not {sync!r}")
    src = source or source_for(tracking_uri)
    try:
        found = src.experiment(experiment)
        experiment_id, name = str(found["experiment_id"]), str(found["name"])
        note = ""
        try:
            clauses = parse_filter(filter_string)
            order = parse_order_by(list(order_by))
        except Unsupported:
            # The server has the last word: it explains a mistake, or answers what we cannot.
            src.search([experiment_id], filter_string, list(order_by), max_results=1)
            use_index = False
            note = "filter or order not supported by the local index: listed by the server"
        if use_index:
            listing, failure = _list_from_index(
                src, tracking_uri, index, experiment_id, name, clauses, order, max_results,
                offset=offset, sync=sync, on_full_sync=on_full_sync,
            )  # fmt: skip
            if listing is not None:
                return listing
            if failure == COLD_INDEX:
                listing = _list_from_server(
                    src, experiment_id, name, filter_string, list(order_by), max_results, offset,
                    "the local run index is being built: listed by the server meanwhile",
                )  # fmt: skip
                return replace(listing, index_pending=True)
            note = f"local run index unavailable ({failure}): listed by the server"
        return _list_from_server(
            src, experiment_id, name, filter_string, list(order_by), max_results, offset, note
        )
    finally:
        if source is None:
            src.close()


def _list_from_index(
    src: RunSource,
    tracking_uri: str,
    index: RunIndex | None,
    experiment_id: str,
    name: str,
    clauses: tuple[Clause, ...],
    order: tuple[OrderKey, ...],
    max_results: int | None,
    *,
    offset: int,
    sync: SyncMode,
    on_full_sync: Callable[[], None] | None,
) -> tuple[RunListing | None, str]:
    """The listing from the synced index, or (None, why) when the index file cannot be used."""
    try:
        own = index or RunIndex.for_uri(tracking_uri)
    except (OSError, sqlite3.Error) as exc:
        return None, str(exc)
    try:
        state = own.state(experiment_id)
        pending = False
        refresh = sync == "full"
        if state is None or state.synced_at is None:
            if sync not in ("now", "full"):
                return None, COLD_INDEX
            report = sync_index(
                src, own, experiment_id, name, refresh=refresh, on_full_sync=on_full_sync
            )
            synced_at, verified = report.synced_at, report.verified_at
        elif sync in ("now", "full", "defer"):
            pending = sync == "defer" and full_sync_due(state, now=time.time())
            max_age = math.inf if pending else None  # the full resync comes later, from sync_runs
            report = sync_index(
                src, own, experiment_id, name,
                refresh=refresh, max_age=max_age, on_full_sync=on_full_sync,
            )  # fmt: skip
            synced_at, verified = report.synced_at, report.verified_at
        else:  # rows first and the sync after ("later"), or a later page of one snapshot
            synced_at, verified = state.synced_at, state.verified_at
            pending = sync == "later"
        runs, matched = own.query(experiment_id, clauses, order, limit=max_results, offset=offset)
    except (OSError, sqlite3.Error) as exc:
        return None, str(exc)
    finally:
        if index is None:
            own.close()
    return (
        RunListing(
            runs=tuple(runs),
            experiment_id=experiment_id,
            experiment_name=name,
            source="index",
            synced_at=datetime.fromtimestamp(synced_at, tz=UTC),
            verified_at=datetime.fromtimestamp(verified, tz=UTC) if verified else None,
            matched=matched,
            more=matched > offset + len(runs),
            index_pending=pending,
        ),
        "",
    )


def _list_from_server(
    src: RunSource,
    experiment_id: str,
    name: str,
    filter_string: str,
    order_by: list[str],
    max_results: int | None,
    offset: int,
    note: str,
) -> RunListing:
    asked = _now()
    runs: list[RunSummary] = []
    token: str | None = None
    # The search API pages by token, not by position: an offset walks the pages before it.
    wanted = None if max_results is None else offset + max_results
    while True:
        want = SERVER_PAGE if wanted is None else min(SERVER_PAGE, wanted - len(runs))
        page, token = src.search(
            [experiment_id], filter_string, order_by, max_results=want, page_token=token
        )
        runs += [summary_from_json(r) for r in page]
        if not token or (wanted is not None and len(runs) >= wanted):
            break
    return RunListing(
        runs=tuple(runs[offset:]),
        experiment_id=experiment_id,
        experiment_name=name,
        source="server",
        synced_at=asked,
        verified_at=asked,
        matched=None if token else len(runs),
        more=token is not None,
        note=note,
    )


# ------------------------------------------------------------------ one run


def get_run(tracking_uri: str, run_id: str, *, source: RunSource | None = None) -> RunSummary:
    """One run as a RunSummary (NotFound names the id)."""
    src = source or source_for(tracking_uri)
    try:
        return summary_from_json(_fetch_run(src, run_id))
    finally:
        if source is None:
            src.close()


def _fetch_run(src: RunSource, run_id: str) -> dict[str, Any]:
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", run_id):
        raise InvalidInput(f"{run_id!r} is not a run id")
    try:
        return src.get_run(run_id)
    except NotFound:
        raise NotFound(f"no run {run_id} on {src.uri}") from None


def show_run(tracking_uri: str, run_id: str, *, source: RunSource | None = None) -> RunDetail:
    """Everything about one run: params, metrics, tags, inputs, artifacts, models, git commit."""
    src = source or source_for(tracking_uri)
    try:
        raw = _fetch_run(src, run_id)
        run = summary_from_json(raw)
        try:
            experiment_name = str(src.experiment_by_id(run.experiment_id)["name"])
        except NotFound:
            experiment_name = ""
        try:
            artifacts = tuple(
                ArtifactEntry(
                    path=str(a["path"]),
                    is_dir=bool(a.get("is_dir")),
                    size=int(a["file_size"]) if a.get("file_size") is not None else None,
                )
                for a in src.list_artifacts(run_id)
            )
        except BackendError:
            artifacts = ()  # an artifact store we cannot reach must not hide the rest
        return RunDetail(
            run=run,
            experiment_name=experiment_name,
            artifact_uri=str((raw.get("info") or {}).get("artifact_uri") or ""),
            artifacts=artifacts,
            models=tuple(_models(src, raw, run)),
            git_commit=run.tags.get(GIT_COMMIT_TAG),
            source=run.tags.get(SOURCE_NAME_TAG),
        )
    finally:
        if source is None:
            src.close()


def _models(src: RunSource, raw: dict[str, Any], run: RunSummary) -> list[LoggedModelRef]:
    outputs = (raw.get("outputs") or {}).get("model_outputs") or []
    ids = list(dict.fromkeys(str(o["model_id"]) for o in outputs if o.get("model_id")))
    found: list[LoggedModelRef] = []
    for model_id, model in zip(ids, _parallel(src.logged_model, ids), strict=True):
        info = (model or {}).get("info") or {}
        found.append(
            LoggedModelRef(
                name=str(info.get("name") or model_id),
                uri=f"models:/{model_id}",
                model_id=model_id,
                flavors=(str(info["model_type"]),) if info.get("model_type") else (),
            )
        )
    known = {m.model_id for m in found}
    found += [
        m
        for m in models_from_history_tag(run.run_id, run.tags)
        if not m.model_id or m.model_id not in known
    ]
    return found


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
