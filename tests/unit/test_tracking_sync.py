"""The run index stays in sync: new, finished, deleted, restored and resumed runs show at once;
only a late edit to an already finished run waits for the next full sync (and says so)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.mlflow.client_source import ClientSource
from backends.mlflow.run_index import RunIndex
from backends.mlflow.run_index_sync import sync


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("syncstore")
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture
def world(client: Any, tmp_path: Path) -> Iterator[tuple[Any, str, RunIndex, ClientSource]]:
    experiment_id = client.create_experiment(f"sync-{uuid.uuid4().hex[:8]}")
    index = RunIndex(tmp_path / "index.sqlite", "sqlite:///sync")
    yield client, experiment_id, index, ClientSource("sqlite:///sync", client)
    index.close()


def _ids(index: RunIndex, experiment_id: str) -> set[str]:
    return {r.run_id for r in index.query(experiment_id, limit=None)[0]}


def _run(client: Any, experiment_id: str, *, finished: bool = True, **metrics: float) -> str:
    run_id = str(client.create_run(experiment_id).info.run_id)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    if finished:
        client.set_terminated(run_id, "FINISHED")
    return run_id


def test_first_sync_is_full_then_incremental(world: Any) -> None:
    client, experiment_id, index, source = world
    first = _run(client, experiment_id, acc=0.5)
    report = sync(source, index, experiment_id, "x")
    assert report.full and report.fetched == 1
    assert _ids(index, experiment_id) == {first}

    second = _run(client, experiment_id, acc=0.7)
    report = sync(source, index, experiment_id, "x")
    assert not report.full
    assert _ids(index, experiment_id) == {first, second}
    assert report.verified_at is not None and report.synced_at > report.verified_at


def test_running_runs_are_refreshed_until_they_finish(world: Any) -> None:
    client, experiment_id, index, source = world
    running = _run(client, experiment_id, finished=False, loss=1.0)
    sync(source, index, experiment_id, "x")
    client.log_metric(running, "loss", 0.5)
    sync(source, index, experiment_id, "x")
    (run,) = index.query(experiment_id, limit=None)[0]
    assert run.status == "RUNNING" and run.metrics["loss"] == 0.5

    client.log_metric(running, "loss", 0.25)
    # Finished with an end time far in the past: only "the index knew it was running" finds it.
    client.set_terminated(running, "FAILED", end_time=1_000)
    sync(source, index, experiment_id, "x")
    (run,) = index.query(experiment_id, limit=None)[0]
    assert run.status == "FAILED" and run.metrics["loss"] == 0.25


def test_deleted_and_restored_runs(world: Any) -> None:
    client, experiment_id, index, source = world
    keep = _run(client, experiment_id)
    doomed = _run(client, experiment_id)
    sync(source, index, experiment_id, "x")
    client.delete_run(doomed)
    sync(source, index, experiment_id, "x")
    assert _ids(index, experiment_id) == {keep}
    client.restore_run(doomed)
    sync(source, index, experiment_id, "x")
    assert _ids(index, experiment_id) == {keep, doomed}


def test_a_resumed_run_is_seen_through_its_new_end_time(world: Any) -> None:
    client, experiment_id, index, source = world
    run_id = _run(client, experiment_id, acc=0.1)
    sync(source, index, experiment_id, "x")
    # Reopen, log and finish between two syncs (what `mlflow.start_run(run_id=...)` does).
    client.update_run(run_id, "RUNNING")
    client.log_metric(run_id, "acc", 0.9)
    client.set_terminated(run_id, "FINISHED")
    sync(source, index, experiment_id, "x")
    (run,) = index.query(experiment_id, limit=None)[0]
    assert run.metrics["acc"] == 0.9


def test_a_backdated_new_run_is_found_within_the_overlap(world: Any) -> None:
    client, experiment_id, index, source = world
    _run(client, experiment_id)
    sync(source, index, experiment_id, "x")
    # Another client whose clock is 2 minutes behind creates a run now.
    late = str(
        client.create_run(experiment_id, start_time=int(time.time() * 1000) - 120_000).info.run_id
    )
    sync(source, index, experiment_id, "x")
    assert late in _ids(index, experiment_id)


def test_late_edit_of_a_finished_run_waits_for_a_full_sync(world: Any) -> None:
    client, experiment_id, index, source = world
    old = int(time.time() * 1000) - 86_400_000
    run_id = str(client.create_run(experiment_id, start_time=old).info.run_id)
    client.set_terminated(run_id, "FINISHED", end_time=old + 1000)
    _run(client, experiment_id)  # a newer run holds the high-water marks
    first = sync(source, index, experiment_id, "x")
    client.set_tag(run_id, "reviewed", "yes")
    report = sync(source, index, experiment_id, "x")

    def edited() -> Any:
        (run,) = [r for r in index.query(experiment_id, limit=None)[0] if r.run_id == run_id]
        return run

    assert "reviewed" not in edited().tags  # MLflow offers no way to see this incrementally...
    assert report.verified_at == first.verified_at < report.synced_at  # ...and we say so
    report = sync(source, index, experiment_id, "x", refresh=True)
    assert report.full and edited().tags["reviewed"] == "yes"


def test_full_sync_happens_by_itself_when_the_last_is_too_old(world: Any) -> None:
    client, experiment_id, index, source = world
    _run(client, experiment_id)
    sync(source, index, experiment_id, "x")
    assert not sync(source, index, experiment_id, "x", max_age=900).full
    assert sync(source, index, experiment_id, "x", max_age=0).full


def test_hard_deleted_runs_leave_the_index(world: Any) -> None:
    client, experiment_id, index, source = world
    gone = _run(client, experiment_id, finished=False)
    sync(source, index, experiment_id, "x")
    client.delete_run(gone)
    # Permanent deletion (`mlflow gc`) removes the row; the index held it as running.
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = client._tracking_client.store
    assert isinstance(store, SqlAlchemyStore)
    store._hard_delete_run(gone)
    report = sync(source, index, experiment_id, "x")
    assert gone not in _ids(index, experiment_id) and report.removed == 1


def test_a_local_store_lists_its_experiments_like_the_server(world: Any) -> None:
    from backends.mlflow import runs as tracking

    client, experiment_id, _, source = world
    client.set_experiment_tag(experiment_id, "owner", "ops")
    found = {e.experiment_id: e for e in tracking.list_experiments("sqlite:///sync", source=source)}
    assert found[experiment_id].tags.get("owner") == "ops"
    assert found[experiment_id].updated is not None
    assert "0" in found  # MLflow's Default experiment


def test_a_full_sync_tells_how_many_runs_it_has_listed_page_by_page(world: Any) -> None:
    from backends.mlflow.run_index_sync import fetch_all

    client, experiment_id, index, source = world
    for _ in range(5):
        _run(client, experiment_id, acc=0.5)
    counts: list[int] = []
    assert len(fetch_all(source, experiment_id, page=2, on_fetched=counts.append)) == 5
    assert counts == [2, 4, 5]  # a running count: the server gives no total to make a bar of

    heard: list[int] = []
    assert sync(source, index, experiment_id, "x", on_fetched=heard.append).full
    assert heard == [5]
    sync(source, index, experiment_id, "x", on_fetched=heard.append)  # incremental: quick
    assert heard == [5]
