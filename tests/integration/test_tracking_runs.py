"""`runs list|show|compare` and the run index against a real `mlflow server` process."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backends.errors import InvalidInput, NotFound
from backends.mlflow import compare, run_index
from backends.mlflow import runs as tracking
from console.cli.exit_codes import ExitCode
from console.cli.main import app
from tests import services

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]

RUNS = 45
runner = CliRunner()


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def experiment(mlflow_server: services.MlflowServer) -> Iterator[tuple[str, str, list[str]]]:
    """RUNS runs made with log_batch (no training): params, metrics with histories, tags."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    name = f"runs-{random.randrange(10**9)}"
    experiment_id = client.create_experiment(name)
    base = int(time.time() * 1000) - 3_600_000

    def make(i: int) -> str:
        rng = random.Random(i)
        start = base + i * 1000
        run = client.create_run(experiment_id, start_time=start, run_name=f"run-{i:02d}")
        history = [Metric("loss", 2.0 / (step + 1) + rng.random() * 0.1, start + step, step)
                   for step in range(20 if i < 3 else 1)]  # fmt: skip
        client.log_batch(
            run.info.run_id,
            metrics=[*history, Metric("accuracy", rng.random(), start, 0)],
            params=[
                Param("model", rng.choice(["rf", "gbm"])),
                Param("depth", str(rng.randrange(1, 12))),
            ],
            tags=[RunTag("team", rng.choice(["a", "b"]))],
        )
        if i != RUNS - 1:  # the newest stays RUNNING
            client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 500)
        return str(run.info.run_id)

    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(make, range(RUNS)))
    yield name, experiment_id, ids


CASES = [
    ("", []),
    ("metrics.accuracy > 0.5", ["metrics.accuracy DESC"]),
    ("params.model = 'rf'", ["params.depth", "metrics.loss"]),
    ("tags.team != 'a' and metrics.loss < 1.5", ["attributes.start_time ASC"]),
    ("attributes.status = 'RUNNING'", []),
    ("params.model LIKE 'g%'", ["metrics.loss DESC"]),
]


@pytest.mark.parametrize(("f", "order"), CASES)
def test_index_and_server_agree(
    tracking_uri: str, experiment: tuple[str, str, list[str]], f: str, order: list[str]
) -> None:
    name, _, _ = experiment
    indexed = tracking.list_runs(
        tracking_uri, name, filter_string=f, order_by=order, max_results=None
    )
    direct = tracking.list_runs(
        tracking_uri, name, filter_string=f, order_by=order, max_results=None, use_index=False
    )
    assert indexed.source == "index" and direct.source == "server"
    assert [r.run_id for r in indexed.runs] == [r.run_id for r in direct.runs]
    assert indexed.runs == direct.runs  # same records, field for field
    assert indexed.matched == len(indexed.runs)


def test_listing_pages_through_the_server_with_tokens(
    tracking_uri: str, experiment: tuple[str, str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _, ids = experiment
    monkeypatch.setattr(tracking, "SERVER_PAGE", 7)
    monkeypatch.setattr(run_index, "FULL_PAGE", 7)
    direct = tracking.list_runs(tracking_uri, name, max_results=None, use_index=False)
    assert len(direct.runs) == RUNS and direct.matched == RUNS and not direct.more
    assert [r.run_id for r in direct.runs] == list(reversed(ids))  # newest first
    first = tracking.list_runs(tracking_uri, name, max_results=10, use_index=False)
    assert len(first.runs) == 10 and first.more and first.matched is None
    indexed = tracking.list_runs(tracking_uri, name, max_results=10, sync="full")
    assert [r.run_id for r in indexed.runs] == [r.run_id for r in first.runs]
    assert indexed.matched == RUNS and indexed.more


@pytest.mark.parametrize("use_index", [True, False])
def test_offset_pages_are_consecutive_and_cover_every_run(
    tracking_uri: str, experiment: tuple[str, str, list[str]], use_index: bool
) -> None:
    name, _, ids = experiment
    order = ["metrics.accuracy DESC"]
    seen: list[str] = []
    offset = 0
    while True:
        page = tracking.list_runs(
            tracking_uri, name, order_by=order, max_results=10, offset=offset,
            use_index=use_index, sync="now" if offset == 0 else "none",
        )  # fmt: skip
        seen += [r.run_id for r in page.runs]
        offset += len(page.runs)
        if not page.more:
            break
    whole = tracking.list_runs(tracking_uri, name, order_by=order, max_results=None)
    assert seen == [r.run_id for r in whole.runs] and sorted(seen) == sorted(ids)


def test_a_later_page_does_not_sync_again(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    from mlflow.tracking import MlflowClient

    name, experiment_id, _ = experiment
    first = tracking.list_runs(tracking_uri, name, max_results=10)
    extra = MlflowClient(tracking_uri).create_run(experiment_id, run_name="mid-paging").info.run_id
    try:
        # The second page comes from the first page's snapshot: no run shifts between pages.
        second = tracking.list_runs(tracking_uri, name, max_results=10, offset=10, sync="none")
        assert second.synced_at == first.synced_at
        assert extra not in {r.run_id for r in first.runs + second.runs}
        again = tracking.list_runs(tracking_uri, name, max_results=10)
        assert again.runs[0].run_id == extra
    finally:
        MlflowClient(tracking_uri).delete_run(extra)


def test_deferred_full_sync_answers_first_and_builds_the_index_later(
    tracking_uri: str, experiment: tuple[str, str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _, ids = experiment
    cold = tracking.list_runs(tracking_uri, name, max_results=10, sync="defer")
    assert cold.source == "server" and cold.index_pending and len(cold.runs) == 10
    tracking.sync_runs(tracking_uri, name)
    warm = tracking.list_runs(tracking_uri, name, max_results=10, sync="defer")
    assert warm.source == "index" and not warm.index_pending
    assert [r.run_id for r in warm.runs] == [r.run_id for r in cold.runs]
    assert warm.matched == len(ids)
    # A full resync that is due is put off too: the answer comes after an incremental sync.
    monkeypatch.setenv("MLOPS_INDEX_MAX_AGE", "0")
    stale = tracking.list_runs(tracking_uri, name, max_results=10, sync="defer")
    assert stale.source == "index" and stale.index_pending
    assert stale.verified_at == warm.verified_at  # no full resync happened


def test_sync_later_shows_the_index_first_and_the_sync_brings_the_rest(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    from mlflow.tracking import MlflowClient

    name, experiment_id, _ = experiment
    tracking.list_runs(tracking_uri, name, max_results=10)  # a built, synced index
    client = MlflowClient(tracking_uri)
    extra = client.create_run(experiment_id, run_name="after-the-sync").info.run_id
    try:
        first = tracking.list_runs(tracking_uri, name, max_results=10, sync="later")
        assert first.source == "index" and first.index_pending
        assert extra not in {r.run_id for r in first.runs}  # not synced yet: shown as it stood
        tracking.sync_runs(tracking_uri, name)
        after = tracking.list_runs(tracking_uri, name, max_results=10)
        assert after.runs[0].run_id == extra and not after.index_pending
    finally:
        client.delete_run(extra)


def test_experiments_are_listed_newest_first(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    from mlflow.tracking import MlflowClient

    name, experiment_id, _ = experiment
    client = MlflowClient(tracking_uri)
    newer = client.create_experiment(f"newer-{random.randrange(10**9)}", tags={"team": "a"})
    try:
        found = tracking.list_experiments(tracking_uri)
        by_id = {e.experiment_id: e for e in found}
        assert by_id[experiment_id].name == name
        assert by_id[newer].tags == {"team": "a"}
        assert [e.experiment_id for e in found].index(newer) < [
            e.experiment_id for e in found
        ].index(experiment_id)
        assert all(e.updated is not None for e in found)
    finally:
        client.delete_experiment(newer)
    assert newer not in {e.experiment_id for e in tracking.list_experiments(tracking_uri)}


def test_index_shows_sync_times_and_new_runs_at_once(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    from mlflow.tracking import MlflowClient

    name, experiment_id, _ = experiment
    before = tracking.list_runs(tracking_uri, name, max_results=None)
    client = MlflowClient(tracking_uri)
    extra = client.create_run(experiment_id, run_name="late-arrival").info.run_id
    try:
        after = tracking.list_runs(tracking_uri, name, filter_string="run_name = 'late-arrival'")
        assert [r.run_id for r in after.runs] == [extra]
        assert after.synced_at > before.synced_at
        assert after.verified_at is not None and after.verified_at <= after.synced_at
    finally:
        client.delete_run(extra)
    gone = tracking.list_runs(tracking_uri, name, filter_string="run_name = 'late-arrival'")
    assert gone.runs == ()


def test_unsupported_syntax_falls_back_to_the_server(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    name, _, _ = experiment
    # MLflow ignores a trailing AND; our parser does not vouch for it, so the server answers.
    listing = tracking.list_runs(tracking_uri, name, filter_string="params.model = 'rf' and")
    assert listing.source == "server" and "not supported" in listing.note
    assert listing.runs and all(r.params["model"] == "rf" for r in listing.runs)


def test_bad_filter_is_invalid_input_with_mlflows_words(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    name, _, _ = experiment
    with pytest.raises(InvalidInput, match="Invalid clause"):
        tracking.list_runs(tracking_uri, name, filter_string="metrics.accuracy >")


def test_cli_list_table_and_json(tracking_uri: str, experiment: tuple[str, str, list[str]]) -> None:
    name, _, ids = experiment
    result = runner.invoke(
        app, ["runs", "list", "-e", name, "-o", "metrics.accuracy DESC", "-n", "5"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # stderr may say a full sync is under way
    assert lines[0].startswith(f"experiment {name}") and f"{RUNS} runs match, showing 5" in lines[0]
    assert "local index synced" in lines[1] and "full resync" in lines[1]
    assert lines[2].split()[:5] == ["RUN", "ID", "NAME", "STATUS", "STARTED"]
    assert "accuracy" in lines[2]
    result = runner.invoke(app, ["runs", "list", "-e", name, "-n", "0", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["source"] == "index" and doc["matched"] == RUNS and not doc["more"]
    assert {r["run_id"] for r in doc["runs"]} == set(ids)
    assert set(doc["runs"][0]) >= {"run_id", "name", "status", "params", "metrics", "start_time"}


def test_cli_bad_filter_exits_2_with_one_line(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    name, _, _ = experiment
    proc = _mlops("runs", "list", "-e", name, "--filter", "metrics.accuracy >> 1")
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Invalid" in proc.stderr, proc.stderr
    proc = _mlops("runs", "list", "-e", "no-such-experiment")
    assert proc.returncode == ExitCode.NOT_FOUND and "no-such-experiment" in proc.stderr


def test_cli_unreachable_server_exits_3_at_its_first_attempt() -> None:
    # Counted, not timed: each run asked for is one connection, and none is tried again.
    for args, asked in (
        (["runs", "list"], 1),
        (["runs", "show", "a" * 32], 1),
        (["runs", "compare", "a" * 32, "b" * 32], 2),
    ):
        with services.CountingDeadEnd() as dead:
            proc = _mlops(*args, env={"MLFLOW_TRACKING_URI": dead.url})
            assert proc.returncode == ExitCode.UNREACHABLE, (args, proc.stderr)
            assert dead.url in proc.stderr and proc.stderr.count("\n") == 1
            assert 1 <= dead.connections <= asked, (args, dead.connections)


def test_show_and_compare_runs_with_histories(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    _, _, ids = experiment
    detail = tracking.show_run(tracking_uri, ids[0])
    assert detail.run.name == "run-00" and detail.run.status == "FINISHED"
    assert detail.run.duration_seconds == 0.5
    assert set(detail.run.params) == {"model", "depth"}

    comparison = compare.compare_runs(tracking_uri, ids[:3], max_points=10)
    loss = next(m for m in comparison.metrics if m.key == "loss")
    assert loss.direction == "min" and len(loss.best) >= 1
    histories = comparison.histories["loss"]
    assert [s.run_id for s in histories] == ids[:3]
    assert all(s.total_points == 20 and s.downsampled and len(s.points) <= 10 for s in histories)

    result = runner.invoke(app, ["runs", "compare", *ids[:3], "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [r["run_id"] for r in doc["runs"]] == ids[:3]
    assert {"params_differ", "params_agree", "metrics", "same_data", "histories"} <= set(doc)


def test_compare_names_every_unknown_run(
    tracking_uri: str, experiment: tuple[str, str, list[str]]
) -> None:
    _, _, ids = experiment
    ghosts = ["0" * 32, "f" * 32]
    with pytest.raises(NotFound) as caught:
        compare.compare_runs(tracking_uri, [ids[0], *ghosts])
    assert all(g in str(caught.value) for g in ghosts)
    result = runner.invoke(app, ["runs", "compare", ids[0], *ghosts])
    assert result.exit_code == ExitCode.NOT_FOUND
    with pytest.raises(InvalidInput):
        compare.compare_runs(tracking_uri, [ids[0]])


def test_compare_up_to_200_runs(tracking_uri: str, experiment: tuple[str, str, list[str]]) -> None:
    _, _, ids = experiment
    comparison = compare.compare_runs(tracking_uri, ids, history=False)
    assert len(comparison.runs) == RUNS and comparison.histories == {}
    with pytest.raises(InvalidInput, match="2 to 200"):
        compare.compare_runs(tracking_uri, [f"{i:032x}" for i in range(201)])


def _mlops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from console.cli.main import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=services.env_with_venv_on_path(**(env or {})),
    )
