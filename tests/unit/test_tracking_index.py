"""The local run index answers filters and orderings exactly as MLflow's own store does.

MLflow is the oracle: a sqlite MLflow store (unit tier: no server) holds runs chosen to hit
the corners (NaN and missing metrics, ties on start time, case in LIKE, deleted runs, data set
inputs, unfinished runs), and every (filter, order) pair must give the same run ids in the
same order from ``MlflowClient.search_runs`` and from the index synced from that store.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.mlflow.client_source import ClientSource
from backends.mlflow.run_filter import Unsupported, parse_filter, parse_order_by
from backends.mlflow.run_index import RunIndex
from backends.mlflow.run_index_sync import sync

BASE_MS = 1_790_000_000_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, list[str]]]:
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("store")
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment_id = client.create_experiment("oracle", artifact_location=str(root / "art"))
    rng = random.Random(3)
    ids = []
    for i in range(40):
        start = BASE_MS + (i // 3) * 1000  # ties of three on start_time: run id breaks them
        tags = {"mlflow.user": rng.choice(["alice", "bob"])}
        if i % 4:
            tags["team"] = rng.choice(["vision", "nlp", "Vision"])
        run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=f"run-{i}")
        rid = run.info.run_id
        metrics = [Metric("loss", rng.random() * 2, start, 0)]
        if i % 5 != 0:
            acc = rng.choice([0.5, 0.25, 0.9, rng.random(), math.nan, math.inf])
            metrics.append(Metric("acc", acc, start, 0))
        if i % 3 == 0:
            metrics.append(Metric("val loss", rng.random(), start, 0))
        params = [Param("model", rng.choice(["rf", "gbm", "RF", "r_f"]))]
        if i % 2:
            params.append(Param("opt", rng.choice(["adam", "sgd"])))
        client.log_batch(rid, metrics=metrics, params=params)
        if i % 4 == 1:
            digest = rng.choice(["d1", "d2"])
            dataset = Dataset(name="iris", digest=digest, source_type="code", source="{}")
            context = [InputTag("mlflow.data.context", rng.choice(["training", "eval"]))]
            client.log_inputs(rid, datasets=[DatasetInput(dataset, context)])
        if i % 7 != 3:
            status = rng.choice(["FINISHED", "FINISHED", "FAILED", "KILLED"])
            client.set_terminated(rid, status, end_time=start + rng.randrange(1, 5000))
        ids.append(rid)
    client.delete_run(ids[5])
    yield client, experiment_id, ids


@pytest.fixture(scope="module")
def index(store: tuple[Any, str, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Any:
    client, experiment_id, _ = store
    idx = RunIndex(tmp_path_factory.mktemp("cache") / "index.sqlite", "sqlite:///oracle")
    sync(ClientSource("sqlite:///oracle", client), idx, experiment_id, "oracle")
    yield idx
    idx.close()


FILTERS = [
    "",
    "metrics.acc > 0.4",
    "metrics.acc >= 0.5 and params.model = 'rf'",
    "metrics.acc != 0.5",
    "metrics.acc = 0.25",
    "metrics.acc < 1e0",
    "metrics.acc > .3",
    "metrics.loss <= 1 AND metrics.acc > 0.1",
    "metrics.`val loss` < 0.5",
    'metrics."val loss" >= 0',
    "params.model LIKE 'r%'",
    "params.model ILIKE 'R%'",
    "params.model LIKE 'R%'",
    "params.model LIKE 'r_f'",
    "params.model != 'rf'",
    'params.model = "gbm"',
    "params.opt IS NULL",
    "params.opt IS NOT NULL and params.opt != 'sgd'",
    "tags.team = 'vision'",
    "tags.team ILIKE 'vision'",
    "tags.team IS NULL",
    "tags.\"mlflow.runName\" = 'run-7'",
    "tags.mlflow.user = 'alice'",
    "attributes.status = 'FAILED'",
    "attributes.status != 'FINISHED'",
    "status LIKE 'F%'",
    "attributes.run_name LIKE 'run-1%'",
    "run_name = 'run-3'",
    "`Run name` ILIKE 'RUN-2%'",
    "attributes.user_id = 'bob'",
    f"attributes.start_time > {BASE_MS + 5000}",
    f"created <= {BASE_MS + 3000}",
    f"attributes.end_time > {BASE_MS + 4000}",
    f"attributes.end_time != {BASE_MS}",
    "datasets.digest = 'd1'",
    "datasets.name LIKE 'ir%'",
    "dataset.context = 'training'",
    "datasets.digest IN ('d1', 'd2')",
    "datasets.context NOT IN ('eval')",
    "attributes.artifact_uri LIKE '%art%'",
]
ORDERS: list[list[str]] = [
    [],
    ["metrics.acc DESC"],
    ["metrics.acc"],
    ["metrics.`val loss` ASC"],
    ["params.model", "metrics.acc DESC"],
    ["params.opt DESC"],
    ["tags.team DESC", "metrics.loss"],
    ["attributes.end_time"],
    ["attributes.end_time DESC"],
    ["attributes.start_time ASC"],
    ["created DESC"],
    ["run_name DESC"],
    ["attributes.status", "attributes.start_time DESC"],
    ["metrics.loss DESC"],
]


def _server_ids(client: Any, experiment_id: str, f: str, order: list[str]) -> list[str]:
    return [r.info.run_id for r in client.search_runs([experiment_id], f, order_by=order)]


@pytest.mark.parametrize("f", FILTERS)
def test_every_filter_matches_mlflow(store: Any, index: RunIndex, f: str) -> None:
    client, experiment_id, _ = store
    expected = _server_ids(client, experiment_id, f, [])
    runs, matched = index.query(experiment_id, parse_filter(f), (), limit=None)
    assert [r.run_id for r in runs] == expected
    assert matched == len(expected)


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: " | ".join(o) or "default")
def test_every_order_matches_mlflow(store: Any, index: RunIndex, order: list[str]) -> None:
    client, experiment_id, _ = store
    for f in ("", "metrics.acc > 0.2", "params.model LIKE 'r%'"):
        expected = _server_ids(client, experiment_id, f, order)
        runs, _ = index.query(experiment_id, parse_filter(f), parse_order_by(order), limit=None)
        assert [r.run_id for r in runs] == expected, (f, order)


def test_paging_matches_mlflow_page_tokens(store: Any, index: RunIndex) -> None:
    client, experiment_id, _ = store
    order = ["metrics.acc DESC"]
    pages, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], "", order_by=order, max_results=7, page_token=token
        )
        pages.append([r.info.run_id for r in page])
        token = page.token
        if not token:
            break
    keys = parse_order_by(order)
    ours = [
        [r.run_id for r in index.query(experiment_id, (), keys, limit=7, offset=o)[0]]
        for o in range(0, 7 * len(pages), 7)
    ]
    assert ours == pages
    _, matched = index.query(experiment_id, (), keys, limit=7)
    assert matched == 39  # 40 runs, one deleted


def test_records_carry_params_metrics_tags_and_datasets(store: Any, index: RunIndex) -> None:
    client, experiment_id, ids = store
    runs, _ = index.query(experiment_id, parse_filter("datasets.name = 'iris'"), (), limit=None)
    assert runs
    for run in runs:
        truth = client.get_run(run.run_id)
        assert run.params == truth.data.params
        assert run.tags == truth.data.tags
        assert set(run.metrics) == set(truth.data.metrics)
        for key, value in truth.data.metrics.items():
            assert run.metrics[key] == value or (math.isnan(value) and math.isnan(run.metrics[key]))
        assert run.status == truth.info.status
        assert run.name == truth.info.run_name
        assert [(d.name, d.digest) for d in run.datasets] == [
            (i.dataset.name, i.dataset.digest) for i in truth.inputs.dataset_inputs
        ]
    assert ids[5] not in {r.run_id for r in index.query(experiment_id, (), (), limit=None)[0]}


# ------------------------------------------------------------------ the parser is never bolder


ODD = [
    "metrics.a > 1 OR metrics.b < 2",
    "metrics.a <> 1",
    "metrics.a > +1",
    "metrics.a >= -0.5e+2",
    "params.x = 1",
    "metrics.a = 'x'",
    "metrics.a IS NULL",
    "attributes.end_time IS NULL",
    "attributes.status IN ('FINISHED')",
    "params.a IN ('x')",
    "params.a = 'it''s'",
    "metrics.a > 1 and",
    "metrics.a > 1;",
    "metrics.a > 1 and (metrics.b > 2)",
    "experiment_id = '1'",
    "lifecycle_stage = 'active'",
    "metrics.a>1AND metrics.b>1",
    "run name = 'x'",
    "metrics.a > 0x10",
    "metrics.val-loss > 1",
    "foo.bar = 'x'",
    "datasets.size = 'x'",
    "attributes.start_time > 'yesterday'",
    "attributes.run_id IN ()",
    "attributes.run_id IN ('a',)",
    'attributes.run_id IN ("a")',
    "`metrics`.`acc` > 1",
    "metrics.acc",
    "params.x LIKE 5",
    "metrics.a > 1 and metrics.b",
]


@pytest.mark.parametrize("f", FILTERS + ODD)
def test_parser_accepts_only_what_mlflow_accepts(store: Any, f: str) -> None:
    from mlflow.exceptions import MlflowException

    client, experiment_id, _ = store
    try:
        parse_filter(f)
    except Unsupported:
        return  # the caller asks the server; nothing to check here
    try:
        client.search_runs([experiment_id], f, max_results=1)
    except MlflowException as exc:
        pytest.fail(f"we accept {f!r}, MLflow rejects it: {exc.message}")


@pytest.mark.parametrize(
    "order",
    [["metrics.a DESC"], ["metrics.a", "metrics.a DESC"], ["datasets.name"], ["foo.x"],
     ["metrics.a DOWN"], ["lifecycle_stage"], ["`Run name`"], ["metrics.a ASC DESC"]],
)  # fmt: skip
def test_order_parser_accepts_only_what_mlflow_accepts(store: Any, order: list[str]) -> None:
    from mlflow.exceptions import MlflowException

    client, experiment_id, _ = store
    try:
        parse_order_by(order)
    except Unsupported:
        return
    try:
        client.search_runs([experiment_id], "", order_by=order, max_results=1)
    except MlflowException as exc:
        pytest.fail(f"we accept {order!r}, MLflow rejects it: {exc.message}")


def test_every_corpus_filter_is_vouched_for() -> None:
    # The index must answer the common syntax itself, not fall back to the server.
    for f in FILTERS:
        parse_filter(f)
    for order in ORDERS:
        parse_order_by(order)


def test_index_file_is_keyed_by_tracking_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends.mlflow.run_index import index_path

    monkeypatch.setenv("MLOPS_CACHE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    a = index_path("http://mlflow.example:5000")
    assert a == index_path("http://mlflow.example:5000/")
    assert a != index_path("http://mlflow.example:5001")
    assert index_path("sqlite:///mlflow.db") == index_path(f"sqlite:///{tmp_path}/mlflow.db")
    assert a.parent == tmp_path / "runs-index"
