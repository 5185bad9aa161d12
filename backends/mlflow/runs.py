"""Runs: list them fast at any scale, and show one (comparing many: ``backends.mlflow.compare``).

Everything returns ``backends.records`` and raises ``backends.errors``. Reads go through a
``RunSource`` (MLflow's REST API over httpx for a tracking server, ``MlflowClient`` for a local
store); listings go through the local run index (``backends.mlflow.run_index``) unless asked not to.
Training itself (the MLflow Project subprocess) lives in ``backends.mlflow.training``.
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
from backends.mlflow.run_filter import Clause, OrderKey, Unsupported, parse_filter, parse_order_by
from backends.mlflow.run_index import RunIndex
from backends.mlflow.run_index_sync import full_sync_due
from backends.mlflow.run_index_sync import sync as sync_index
from backends.mlflow.run_mapping import (
    GIT_COMMIT_TAG,
    SOURCE_NAME_TAG,
    models_from_history_tag,
    summary_from_json,
)
from backends.mlflow.run_source import RunSource, source_for
from backends.records import (
    ArtifactEntry,
    Experiment,
    LoggedModelRef,
    RunDetail,
    RunListing,
    RunSummary,
)

__all__ = [
    "get_run",
    "list_experiments",
    "list_runs",
    "show_run",
    "sync_runs",
]

SyncMode = Literal["now", "full", "defer", "later", "none"]  # see list_runs
SYNC_MODES: tuple[SyncMode, ...] = ("now", "full", "defer", "later", "none")
SERVER_PAGE = 1000
_PARALLEL = 8

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
    on_fetched: Callable[[int], None] | None = None,
) -> RunListing:
    """Runs of ``experiment`` (name or id) matching an MLflow filter, in MLflow's order.

    With ``use_index`` (the default) the local index answers, synced with the server first as
    ``sync`` says; ``on_full_sync`` is told before a full sync starts, and ``on_fetched`` how
    many runs it has listed so far, after each page. ``max_results=None``
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
                offset=offset, sync=sync, on_full_sync=on_full_sync, on_fetched=on_fetched,
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
    on_fetched: Callable[[int], None] | None = None,
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
                src, own, experiment_id, name,
                refresh=refresh, on_full_sync=on_full_sync, on_fetched=on_fetched,
            )  # fmt: skip
            synced_at, verified = report.synced_at, report.verified_at
        elif sync in ("now", "full", "defer"):
            pending = sync == "defer" and full_sync_due(state, now=time.time())
            max_age = math.inf if pending else None  # the full resync comes later, from sync_runs
            report = sync_index(
                src, own, experiment_id, name,
                refresh=refresh, max_age=max_age, on_full_sync=on_full_sync,
                on_fetched=on_fetched,
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
