"""Record mapping, compare logic, metric directions, downsampling, REST error mapping."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backends.errors import BackendError, InvalidInput, NotFound, Unavailable
from backends.mlflow.compare import compare_summaries, downsample, metric_direction
from backends.mlflow.run_mapping import point_from_json, summary_from_json
from backends.mlflow.run_source import RestSource
from backends.records import DatasetRef, MetricPoint, RunListing, RunSummary

RUN_JSON: dict[str, Any] = {
    "info": {
        "run_uuid": "a" * 32,
        "run_id": "a" * 32,
        "experiment_id": "7",
        "run_name": "brave-owl",
        "user_id": "alice",
        "status": "FINISHED",
        "start_time": 1_790_000_000_000,
        "end_time": "1790000012500",  # proto JSON may send int64 as a string
        "artifact_uri": "mlflow-artifacts:/7/aaa/artifacts",
        "lifecycle_stage": "active",
    },
    "data": {
        "metrics": [
            {"key": "accuracy", "value": 0.93, "timestamp": 1, "step": 3},
            {"key": "loss", "value": "NaN", "timestamp": 1, "step": 3},
            {"key": "big", "value": "Infinity", "timestamp": 1, "step": 0},
        ],
        "params": [{"key": "seed", "value": "7"}],
        "tags": [{"key": "mlflow.runName", "value": "brave-owl"}],
    },
    "inputs": {
        "dataset_inputs": [
            {
                "tags": [{"key": "mlflow.data.context", "value": "training"}],
                "dataset": {"name": "iris", "digest": "6f1e", "source_type": "code"},
            }
        ]
    },
}


def test_summary_from_rest_json() -> None:
    run = summary_from_json(RUN_JSON)
    assert run.run_id == "a" * 32 and run.experiment_id == "7" and run.name == "brave-owl"
    assert run.start_time == datetime(2026, 9, 21, 14, 13, 20, tzinfo=UTC)
    assert run.duration_seconds == 12.5
    assert run.metrics["accuracy"] == 0.93
    assert math.isnan(run.metrics["loss"]) and run.metrics["big"] == math.inf
    assert run.params == {"seed": "7"} and run.user == "alice"
    assert run.datasets == (DatasetRef("iris", "6f1e", "training", "code"),)


def test_summary_of_a_running_run_has_no_duration() -> None:
    info = {**RUN_JSON["info"], "end_time": None, "status": "RUNNING"}
    run = summary_from_json({"info": info, "data": {}})
    assert run.end_time is None and run.duration_seconds is None
    assert run.metrics == {} and run.datasets == ()


def test_metric_point() -> None:
    p = point_from_json({"key": "loss", "value": 0.5, "timestamp": "1790000000000", "step": "4"})
    assert p.step == 4 and p.value == 0.5 and p.timestamp.year == 2026


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("loss", "min"), ("val_loss", "min"), ("test-rmse", "min"), ("eval/error", "min"),
        ("accuracy", "max"), ("f1", "max"), ("roc_auc", "max"), ("val/acc", "max"),
        ("f1_macro", "max"), ("throughput", "max"), ("epoch", "unknown"), ("lr", "unknown"),
        ("accuracy_loss", "unknown"),
    ],
)  # fmt: skip
def test_metric_direction_by_name(name: str, direction: str) -> None:
    assert metric_direction(name) == direction


def test_metric_direction_override_wins() -> None:
    assert metric_direction("loss", {"loss": "max"}) == "max"
    assert metric_direction("custom", {"custom": "min"}) == "min"


def _run(
    run_id: str, params: dict[str, str], metrics: dict[str, float], digest: str = ""
) -> RunSummary:
    datasets = (DatasetRef("iris", digest),) if digest else ()
    return RunSummary(
        run_id=run_id,
        experiment_id="1",
        name=run_id,
        status="FINISHED",
        start_time=None,
        end_time=None,
        user="",
        params=params,
        metrics=metrics,
        tags={},
        datasets=datasets,
    )


def test_compare_splits_params_and_marks_the_best() -> None:
    runs = [
        _run("r1", {"seed": "1", "depth": "3", "data": "x"}, {"accuracy": 0.9, "loss": 0.3}, "d"),
        _run("r2", {"seed": "1", "depth": "5", "data": "x"}, {"accuracy": 0.95, "loss": 0.3}, "d"),
        _run("r3", {"seed": "1", "data": "x"}, {"accuracy": math.nan, "epoch": 3.0}, "d"),
    ]
    c = compare_summaries(runs)
    assert [p.key for p in c.params_differ] == ["depth"]
    assert c.params_differ[0].values == ("3", "5", None)
    assert [p.key for p in c.params_agree] == ["data", "seed"]
    by_key = {m.key: m for m in c.metrics}
    assert by_key["accuracy"].direction == "max" and by_key["accuracy"].best == (1,)  # NaN ignored
    assert by_key["loss"].direction == "min" and by_key["loss"].best == (0, 1)  # ties: both
    assert by_key["loss"].values == (0.3, 0.3, None)
    assert by_key["epoch"].direction == "unknown" and by_key["epoch"].best == ()
    assert c.same_data is True


def test_compare_answers_same_data() -> None:
    same = compare_summaries([_run("a", {}, {}, "d1"), _run("b", {}, {}, "d1")])
    other = compare_summaries([_run("a", {}, {}, "d1"), _run("b", {}, {}, "d2")])
    unknown = compare_summaries([_run("a", {}, {}), _run("b", {}, {})])
    half = compare_summaries([_run("a", {}, {}, "d1"), _run("b", {}, {})])
    clash = compare_summaries([_run("a", {}, {}, "d1"), _run("b", {}, {}), _run("c", {}, {}, "d2")])
    assert (same.same_data, other.same_data, unknown.same_data) == (True, False, None)
    assert (half.same_data, clash.same_data) == (None, False)


def test_compare_only_asked_metrics_with_overrides() -> None:
    runs = [_run("a", {}, {"score": 1.0, "loss": 2.0}), _run("b", {}, {"score": 2.0, "loss": 1.0})]
    c = compare_summaries(runs, metrics=["score"], directions={"score": "min"})
    assert [m.key for m in c.metrics] == ["score"] and c.metrics[0].best == (0,)


def _points(values: list[float]) -> list[MetricPoint]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [MetricPoint(i, t0 + timedelta(seconds=i), v) for i, v in enumerate(values)]


def test_downsample_keeps_short_series_and_peaks_of_long_ones() -> None:
    short = _points([1.0, 2.0, 3.0])
    assert downsample(short, 10) == short
    values = [math.sin(i / 50) for i in range(10_000)]
    values[4321] = 50.0  # a spike that every-n-th sampling would lose
    kept = downsample(_points(values), 200)
    assert len(kept) <= 200
    assert kept[0].step == 0 and kept[-1].step == 9_999
    assert any(p.value == 50.0 for p in kept)
    assert [p.step for p in kept] == sorted(p.step for p in kept)
    with pytest.raises(InvalidInput):
        downsample(short, 1)


def test_listing_json_is_what_print_json_would_write() -> None:
    from console.cli.common import to_jsonable
    from console.cli.runs_output import listing_json

    listing = RunListing(
        runs=(summary_from_json(RUN_JSON), _run("b", {"x": "1"}, {"m": 1.0}, "d")),
        experiment_id="7",
        experiment_name="iris",
        source="index",
        synced_at=datetime(2026, 1, 1, tzinfo=UTC),
        verified_at=None,
        matched=2,
        more=False,
    )
    assert listing_json(listing) == to_jsonable(listing)


# ------------------------------------------------------------------ REST errors (MockTransport)


def _source(status: int, body: Any) -> RestSource:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    return RestSource("http://mlflow.test", client=httpx.Client(transport=transport), backoff=0)


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid clause\n 'x'"},
         InvalidInput, "Invalid clause 'x'"),
        (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'x' not found"},
         NotFound, "Run 'x' not found"),
        (503, {}, Unavailable, "http://mlflow.test answered 503"),
        (500, {"error_code": "INTERNAL_ERROR", "message": "boom"}, BackendError, "boom"),
    ],
)  # fmt: skip
def test_rest_errors_become_ours(status: int, body: Any, kind: type, text: str) -> None:
    with pytest.raises(kind) as caught:
        _source(status, body).get_run("x")
    assert text in str(caught.value) and "\n" not in str(caught.value)


def _answers(*statuses: int) -> tuple[RestSource, list[int]]:
    """A source whose server answers ``statuses`` in turn (then 200s); the list counts asks."""
    asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        status = statuses[len(asked)] if len(asked) < len(statuses) else 200
        asked.append(status)
        body = {"run": RUN_JSON} if status == 200 else {"message": "database is locked"}
        return httpx.Response(status, json=body)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    return RestSource("http://mlflow.test", client=client, backoff=0), asked


def test_a_transient_server_error_is_asked_again() -> None:
    source, asked = _answers(500, 503)
    assert source.get_run("x")["info"]["run_id"] == RUN_JSON["info"]["run_id"]
    assert asked == [500, 503, 200]


def test_a_server_error_that_persists_is_reported_after_the_retries() -> None:
    source, asked = _answers(500, 500, 500, 500, 500)
    with pytest.raises(BackendError, match="database is locked"):
        source.get_run("x")
    assert asked == [500, 500, 500, 500]  # the first ask and three more


def test_a_client_error_is_not_asked_again() -> None:
    source, asked = _answers(404)
    with pytest.raises(NotFound):
        source.get_run("x")
    assert asked == [404]


def test_rest_connection_failure_names_the_uri() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    source = RestSource(
        "http://mlflow.test:5000", client=httpx.Client(transport=httpx.MockTransport(refuse))
    )
    with pytest.raises(Unavailable, match=r"http://mlflow.test:5000 is unreachable"):
        source.search(["1"])


def test_rest_search_sends_mlflow_request_and_follows_tokens() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        import json

        body = json.loads(request.content)
        seen.append(body)
        token = None if body.get("page_token") else "next"
        return httpx.Response(200, json={"runs": [RUN_JSON], "next_page_token": token})

    from backends.mlflow.run_index_sync import fetch_all

    source = RestSource("http://m.test", client=httpx.Client(transport=httpx.MockTransport(answer)))
    runs = fetch_all(source, "7", "metrics.a > 1", view="deleted", page=10)
    assert len(runs) == 2
    assert seen[0] == {
        "experiment_ids": ["7"],
        "filter": "metrics.a > 1",
        "max_results": 10,
        "order_by": [],
        "run_view_type": "DELETED_ONLY",
    }
    assert seen[1]["page_token"] == "next"


# ------------------------------------------------------------------ `runs logs --follow`


def test_follow_stops_at_the_closing_line(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from console.cli.runs import _follow

    log = tmp_path / "run.log"
    log.write_text("=== mlops: pid 1: mlflow run\nstep 1\n=== done 0\nafter\n")
    _follow(log, "=== done", lambda: True, lambda: False)
    assert capsys.readouterr().out.splitlines() == [
        "=== mlops: pid 1: mlflow run",
        "step 1",
        "=== done 0",
    ]


def test_follow_stops_when_the_writer_died_without_closing(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from backends.mlflow.training import log_writer_alive
    from console.cli.runs import _follow

    log = tmp_path / "run.log"
    log.write_text("=== mlops: pid 999999999: mlflow run\nstep 1\n")
    assert log_writer_alive(log) is False
    _follow(log, "=== done", lambda: log_writer_alive(log), lambda: False)
    out = capsys.readouterr().out
    assert "step 1" in out and "training process is gone" in out
    log.write_text(f"=== mlops: pid {__import__('os').getpid()}: mlflow run\n")
    assert log_writer_alive(log) is True
