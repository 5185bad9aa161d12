"""Keeping the run index in step with the server: full and incremental syncs (the module
docstring of ``backends.mlflow.run_index`` says how and why)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from backends.mlflow.run_index import (
    FULL_PAGE,
    SAFE_ID,
    UNFINISHED,
    RunIndex,
    SyncReport,
    SyncState,
    run_id_of,
)
from backends.mlflow.run_source import RunSource

__all__ = ["fetch_all", "full_sync_due", "sync"]

Json = dict[str, Any]


def fetch_all(
    source: RunSource,
    experiment_id: str,
    filter_string: str = "",
    *,
    view: str = "all",
    page: int | None = None,
    on_fetched: Callable[[int], None] | None = None,
) -> list[Json]:
    """Every run matching ``filter_string``, following page tokens (``FULL_PAGE`` a page);
    ``on_fetched`` hears how many runs have come so far, after each page."""
    runs: list[Json] = []
    token: str | None = None
    while True:
        batch, token = source.search(
            [experiment_id],
            filter_string,
            max_results=page or FULL_PAGE,
            page_token=token,
            view=view,
        )
        runs += batch
        if on_fetched is not None:
            on_fetched(len(runs))
        if not token:
            return runs


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def full_sync_due(state: SyncState | None, *, now: float, max_age: float | None = None) -> bool:
    """Whether the next sync of an experiment in ``state`` lists every run (slow at scale)."""
    max_age = _env_seconds("MLOPS_INDEX_MAX_AGE", 3600) if max_age is None else max_age
    return state is None or state.verified_at is None or now - state.verified_at > max_age


def sync(
    source: RunSource,
    index: RunIndex,
    experiment_id: str,
    name: str,
    *,
    refresh: bool = False,
    max_age: float | None = None,
    overlap: float | None = None,
    on_full_sync: Callable[[], None] | None = None,
    on_fetched: Callable[[int], None] | None = None,
) -> SyncReport:
    """Bring the index's copy of one experiment up to date with the server (see module doc).

    ``on_full_sync`` is called before a full sync starts (it takes as long as listing every
    run from the server), so a caller can say why this answer is slower; ``on_fetched`` then
    hears how many runs it has listed so far, page by page (the server gives no total).
    """
    overlap = _env_seconds("MLOPS_INDEX_OVERLAP", 300) if overlap is None else overlap
    started = time.time()
    clock = time.perf_counter()
    state = index.state(experiment_id)
    if refresh or state is None or full_sync_due(state, now=started, max_age=max_age):
        if on_full_sync is not None:
            on_full_sync()
        runs = fetch_all(source, experiment_id, on_fetched=on_fetched)
        index.replace(experiment_id, name, runs, at=started)
        return SyncReport(True, len(runs), 0, time.perf_counter() - clock, started, started)

    # Thresholds use the earlier of the newest time seen and our own last sync: a client whose
    # clock runs ahead cannot push the mark past runs that other clients are still creating.
    last_ms = int((state.synced_at or started) * 1000)
    slack = int(overlap * 1000)
    queries = [f"attributes.start_time >= {min(state.start_hwm or 0, last_ms) - slack}"]
    if state.end_hwm:
        queries.append(f"attributes.end_time >= {min(state.end_hwm, last_ms) - slack}")
    queries += [f"attributes.status = '{s}'" for s in UNFINISHED]
    searches = [(query, "all") for query in queries] + [("", "deleted")]
    # Independent small searches: in parallel, the sync costs about one round trip.
    with ThreadPoolExecutor(len(searches)) as pool:
        answers = list(
            pool.map(
                lambda qv: fetch_all(source, experiment_id, qv[0], view=qv[1], page=1000), searches
            )
        )
    changed: dict[str, Json] = {}
    for answer in answers[:-1]:
        for run in answer:
            changed[run_id_of(run)] = run
    deleted_now = {run_id_of(r) for r in answers[-1]}

    # Runs the index holds as unfinished or deleted that no query above returned: they finished
    # without an end time in the window, were restored, or were removed for good.
    recheck = index.ids(experiment_id, statuses=UNFINISHED) | (
        index.ids(experiment_id, stage="deleted") - deleted_now
    )
    recheck -= changed.keys()
    found: set[str] = set()
    # Run ids are hex from the server; anything else is never spliced into a filter.
    pending = sorted(r for r in recheck if SAFE_ID.fullmatch(r))
    for i in range(0, len(pending), 100):
        ids = ", ".join(f"'{run_id}'" for run_id in pending[i : i + 100])
        for run in fetch_all(source, experiment_id, f"attributes.run_id IN ({ids})", page=1000):
            changed[run_id_of(run)] = run
            found.add(run_id_of(run))
    gone = recheck - found
    index.update(
        experiment_id, name, list(changed.values()), deleted=deleted_now, gone=gone, at=started
    )
    return SyncReport(
        False,
        len(changed),
        len(gone),
        time.perf_counter() - clock,
        started,
        state.verified_at,
    )
