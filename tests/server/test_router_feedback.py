"""Labels back through the router with a canary (`python -m server.router` as a real process,
between two real model servers, `python -m server`): each label reaches the server that answered
its prediction — single or in one list mixing both versions — the list's reports come back
merged in the client's order, unknown ids go to the stable, a dead canary fails only its own
items, and after a promotion or a removal the remembered ids go where that server now is.
The splitting and merging themselves are checked as pure functions first."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.router_feedback import AnsweredBy, Failure, merged, part_answer, split
from server.routing import Canary, RoutingTable, Upstream
from tests import services
from tests.server.conftest import FEATURES, iris_frame
from tests.server.router_helpers import change
from tests.server.test_router_faults import Router, start_router

ROWS = iris_frame()[FEATURES].to_numpy().tolist()
STABLE, CANARY = "http://stable:1", "http://canary:2"
TABLE = RoutingTable(Upstream(STABLE, "1"), Canary(Upstream(CANARY, "2"), 50.0))


# ---------------------------------------------------------------------- pure: split and merge


def answered(*ids: str) -> AnsweredBy:
    lru = AnsweredBy(100)
    for rid in ids:
        lru.remember(rid, CANARY)
    return lru


def label(rid: Any, index: Any = 0, truth: Any = 1) -> dict[str, Any]:
    return {"request_id": rid, "index": index, "truth": truth}


def test_a_list_spanning_both_is_split_in_order_and_anything_else_goes_whole() -> None:
    lru = answered("c1", "c2")
    doc = [label("s1"), label("c1", 1), "junk", label("c2"), {"truth": 0}]
    items, parts = split(json.dumps(doc).encode(), TABLE, lru)
    assert items == doc
    assert [(p.url, p.positions) for p in parts] == [(STABLE, [0, 2, 4]), (CANARY, [1, 3])]
    assert json.loads(parts[1].body) == [doc[1], doc[3]]
    assert json.loads(parts[0].body) == [doc[0], doc[2], doc[4]]

    # Whole, as it came: one upstream's labels, a single one, not JSON, not a list, empty.
    for body, url in [
        (json.dumps([label("c1"), label("c2")]).encode(), CANARY),
        (json.dumps(label("c1")).encode(), CANARY),
        (json.dumps(label("unknown")).encode(), STABLE),
        (b"[{not json", STABLE),
        (b"[NaN]", STABLE),
        (b'"text"', STABLE),
        (b"[]", STABLE),
    ]:
        _, parts = split(body, TABLE, lru)
        assert [(p.url, p.body) for p in parts] == [(url, body)], body

    # A canary that serves no more (removed, replaced): its ids go to the stable.
    _, parts = split(
        json.dumps([label("c1"), label("s")]).encode(), RoutingTable(TABLE.stable), lru
    )
    assert [p.url for p in parts] == [STABLE]


def test_a_services_labels_are_split_by_the_task_that_answered() -> None:
    service = RoutingTable(Upstream("http://tasks.v1:8080", "1"))
    tasks = AnsweredBy(100)
    tasks.remember("a1", "http://10.0.0.2:8080")
    tasks.remember("b1", "http://10.0.0.3:8080")
    tasks.remember("a2", "http://10.0.0.2:8080")
    doc = [label("a1"), label("b1"), label("x"), label("a2")]
    _, parts = split(json.dumps(doc).encode(), service, AnsweredBy(100), tasks)
    assert [(p.task, p.positions) for p in parts] == [
        (None, [2]),  # not remembered: any task (it will say not found)
        ("http://10.0.0.2:8080", [0, 3]),
        ("http://10.0.0.3:8080", [1]),
    ]
    assert {p.url for p in parts} == {"http://tasks.v1:8080"}
    _, (part,) = split(json.dumps(label("b1")).encode(), service, AnsweredBy(100), tasks)
    assert part.task == "http://10.0.0.3:8080"


def test_the_answered_ids_are_bounded_newest_kept() -> None:
    lru = AnsweredBy(3)
    for rid in ("a", "b", "c", "a", "d"):  # "a" answered again: now the newest
        lru.remember(rid, CANARY)
    assert len(lru) == 3
    assert [lru.get(r) for r in ("a", "b", "c", "d")] == [CANARY, None, CANARY, CANARY]
    off = AnsweredBy(0)
    off.remember("a", CANARY)
    assert len(off) == 0 and off.get("a") is None


def test_reports_merge_in_order_and_a_failed_part_fails_only_its_items() -> None:
    doc = [label("s1"), label("c1", 2), "junk", label("c2", None)]
    items, parts = split(json.dumps(doc).encode(), TABLE, answered("c1", "c2"))
    stable_results = [
        {"request_id": "s1", "index": 0, "outcome": "accepted"},
        {"request_id": None, "index": 0, "outcome": "invalid", "message": "an item must be..."},
    ]
    canary_results = [
        {"request_id": "c1", "index": 2, "outcome": "relabelled"},
        {"request_id": "c2", "index": 0, "outcome": "not_found", "message": "no row"},
    ]
    status, body = merged(items, parts, [stable_results, canary_results])
    assert status == 200
    assert body == {
        "results": [stable_results[0], canary_results[0], stable_results[1], canary_results[1]],
        "accepted": 1,
        "relabelled": 1,
        "not_found": 1,
        "invalid": 1,
    }

    down = Failure(503, "upstream_unreachable", "http://canary:2 refused the connection")
    status, body = merged(items, parts, [stable_results, down])
    assert status == 200
    assert [r["outcome"] for r in body["results"]] == ["accepted", "failed", "invalid", "failed"]
    assert body["results"][1] == {
        "request_id": "c1",
        "index": 2,
        "outcome": "failed",
        "message": "http://canary:2 refused the connection",
    }
    assert body["results"][3]["index"] == 0  # null index: row 0, as the model server echoes it
    assert (body["accepted"], body["failed"], body["not_found"]) == (1, 2, 0)

    # Nothing judged: refused as a whole with the first part's status, the report in details.
    status, body = merged(items, parts, [Failure(504, "upstream_timeout", "slow"), down])
    assert status == 504
    assert body["error"]["type"] == "upstream_timeout"
    assert body["error"]["details"]["failed"] == 4
    assert body["error"]["details"]["results"][2] == {
        "request_id": None,
        "index": 0,
        "outcome": "failed",
        "message": "slow",
    }


def test_a_part_answer_is_a_report_of_its_items_or_a_failure() -> None:
    report = {"results": [{"outcome": "accepted"}], "accepted": 1}
    assert part_answer(200, json.dumps(report).encode(), 1, "the canary") == report["results"]
    assert isinstance(part_answer(200, json.dumps(report).encode(), 2, "the canary"), Failure)
    refused = {"error": {"type": "not_ready", "message": "loading", "details": {}}}
    failure = part_answer(503, json.dumps(refused).encode(), 1, "the canary (http://c)")
    assert failure == Failure(503, "not_ready", "the canary (http://c) answered 503: loading")
    assert part_answer(200, b"<html>", 1, "x") == Failure(
        502, "upstream_error", "x answered 200 without a per-item report"
    )


# ---------------------------------------------------------------------- real servers


def start_model(model_dir: Path, tmp: Path, name: str) -> tuple[str, Any]:
    return services.start_model_server(str(model_dir), tmp / f"model-{name}.log", timeout=120)


@pytest.fixture(scope="module")
def stable(iris_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, proc = start_model(iris_model_dir, tmp_path_factory.mktemp("stable"), "stable")
    try:
        yield url
    finally:
        services._stop(proc)


@pytest.fixture(scope="module")
def canary(iris_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, proc = start_model(iris_model_dir, tmp_path_factory.mktemp("canary"), "canary")
    try:
        yield url
    finally:
        services._stop(proc)


@pytest.fixture
def router(stable: str, tmp_path: Path) -> Iterator[Router]:
    r = start_router(stable, tmp_path)
    try:
        yield r
    finally:
        services._stop(r.proc)


def put_canary(router: Router, url: str, weight: float = 50) -> None:
    answer = change(router, "PUT", "canary", {"upstream": url, "version": "2", "weight": weight})
    assert answer.status_code == 200, answer.text


class Figures:
    """A model server's own counters, read from its /metrics."""

    def __init__(self, url: str) -> None:
        text = httpx.get(f"{url}/metrics", timeout=30).text
        self.samples = [
            (s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        return sum(
            v
            for n, found, v in self.samples
            if n == name and all(found.get(k) == want for k, want in labels.items())
        )

    def rows_predicted(self) -> float:
        return self.total("mlops_predictions_total")

    def labels(self, outcome: str) -> float:
        return self.total("mlops_feedback_total", outcome=outcome)

    def quality_rows(self) -> float:
        return self.total("mlops_model_quality_rows")


def predict_through(router: Router, n: int, rows_each: int = 2) -> list[tuple[str, list[Any]]]:
    """``n`` predictions through the router, ``rows_each`` rows apiece: (request id, answers)."""
    made = []
    with httpx.Client(timeout=60) as http:
        for i in range(n):
            rid = f"req-{uuid.uuid4().hex}"
            rows = [ROWS[(i * rows_each + j) % len(ROWS)] for j in range(rows_each)]
            answer = http.post(
                f"{router.url}/predict", json={"data": rows}, headers={"X-Request-Id": rid}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["request_id"] == rid
            made.append((rid, answer.json()["predictions"]))
    return made


def feedback(router: Router, body: Any) -> httpx.Response:
    return httpx.post(f"{router.url}/feedback", json=body, timeout=60)


def test_labels_reach_the_server_that_answered_single_and_in_one_mixed_list(
    router: Router, stable: str, canary: str
) -> None:
    put_canary(router, canary, 50)
    before = {"stable": Figures(stable), "canary": Figures(canary)}
    made = predict_through(router, 40)
    after_predictions = {"stable": Figures(stable), "canary": Figures(canary)}
    rows = {
        who: after_predictions[who].rows_predicted() - before[who].rows_predicted()
        for who in before
    }
    # A 50 % draw sends all 40 one way about once in 5 * 10^11: both must have answered.
    assert rows["stable"] > 0 and rows["canary"] > 0 and sum(rows.values()) == 80

    # Single labels: the first four requests' row 0, one request at a time.
    for rid, predicted in made[:4]:
        answer = feedback(router, label(rid, 0, predicted[0]))
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["outcome"] == "accepted"

    # One list with every other row of both versions, in a shuffled order, and an unknown id.
    labels = [label(rid, 1, predicted[1]) for rid, predicted in made[:4]]
    labels += [label(rid, i, p[i]) for rid, p in made[4:] for i in (0, 1)]
    random.Random(7).shuffle(labels)
    labels.insert(5, label("never-predicted", 0, 0))
    answer = feedback(router, labels)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert set(report) == {"results", "accepted", "relabelled", "not_found", "invalid"}
    assert [(r["request_id"], r["index"]) for r in report["results"]] == [
        (item["request_id"], item["index"]) for item in labels
    ]
    outcomes = [r["outcome"] for r in report["results"]]
    assert outcomes == ["accepted"] * 5 + ["not_found"] + ["accepted"] * (len(labels) - 6)
    assert (report["accepted"], report["not_found"], report["relabelled"], report["invalid"]) == (
        76,
        1,
        0,
        0,
    )

    # A single label for an id nobody answered: the stable's own 404.
    lost = feedback(router, label("never-predicted-either", 0, 0))
    assert lost.status_code == 404 and lost.json()["error"]["type"] == "not_found"

    # Each server took exactly the labels for the rows it predicted, and judges only those.
    after = {"stable": Figures(stable), "canary": Figures(canary)}
    for who in before:
        taken = after[who].labels("accepted") - before[who].labels("accepted")
        assert taken == rows[who], who
        judged = after[who].quality_rows() - before[who].quality_rows()
        assert judged == rows[who], who
    assert after["stable"].labels("not_found") - before["stable"].labels("not_found") == 2
    assert after["canary"].labels("not_found") == before["canary"].labels("not_found")


def test_after_a_promotion_the_ids_go_to_the_promoted_server_and_after_a_removal_to_stable(
    stable: str, canary: str, tmp_path: Path
) -> None:
    # The canary is promoted: its earlier predictions' labels go to it, now the stable. (Each
    # router has a state directory of its own: a restarted one would come back promoted.)
    (tmp_path / "promoted").mkdir()
    (tmp_path / "removed").mkdir()
    r = start_router(stable, tmp_path / "promoted")
    try:
        put_canary(r, canary, 100)
        made = predict_through(r, 3, rows_each=1)
        promoted = change(r, "POST", "canary/promote", {"drain_timeout": 30})
        assert promoted.status_code == 200, promoted.text
        report = feedback(r, [label(rid, 0, p[0]) for rid, p in made]).json()
        assert report["accepted"] == 3, report
    finally:
        services._stop(r.proc)

    # The canary is removed: its container is gone as far as the router knows, so the labels go
    # to the stable, which says what it knows of them: nothing.
    r = start_router(stable, tmp_path / "removed")
    try:
        put_canary(r, canary, 100)
        made = predict_through(r, 2, rows_each=1)
        assert change(r, "DELETE", "canary").status_code == 200
        single = feedback(r, label(made[0][0], 0, made[0][1][0]))
        assert single.status_code == 404, single.text
        report = feedback(r, [label(rid, 0, p[0]) for rid, p in made]).json()
        assert report["not_found"] == 2, report
    finally:
        services._stop(r.proc)


def test_a_dead_canary_fails_its_items_only_and_the_stable_takes_its_own(
    router: Router, stable: str, iris_model_dir: Path, tmp_path: Path
) -> None:
    url, proc = start_model(iris_model_dir, tmp_path, "doomed")
    try:
        put_canary(router, url, 50)
        made = predict_through(router, 30)
        canary_rows = Figures(url).rows_predicted()
    finally:
        services._stop(proc)
    before = Figures(stable)
    labels = [label(rid, i, p[i]) for rid, p in made for i in (0, 1)]
    answer = feedback(router, labels)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert 0 < canary_rows < 60
    assert (report["accepted"], report["failed"]) == (60 - canary_rows, canary_rows)
    assert [(r["request_id"], r["index"]) for r in report["results"]] == [
        (item["request_id"], item["index"]) for item in labels
    ]
    failed = [r for r in report["results"] if r["outcome"] == "failed"]
    assert all(
        url in r["message"] and set(r) == {"request_id", "index", "outcome", "message"}
        for r in failed
    )
    assert Figures(stable).labels("accepted") - before.labels("accepted") == 60 - canary_rows

    # A single label for the dead canary: the router's readable 503, as any request there gets.
    dead_rid = failed[0]["request_id"]
    single = feedback(router, label(dead_rid, 0, 0))
    assert single.status_code == 503, single.text
    assert single.json()["error"]["type"] == "upstream_unreachable"
