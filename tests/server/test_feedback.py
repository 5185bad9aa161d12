"""Labels back on a real model server: POST /feedback joins a label to the prediction it judges
(by request id and row index), realized quality shows by the next scrape, and the prediction
log keeps the rows and labels in JSON lines that other tools read."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.config import ServerConfig
from server.prediction_log import log_files, read_records
from tests.server.conftest import FEATURES, iris_frame, wait_ready
from tests.services import service_missing

ROWS = iris_frame()[FEATURES].to_numpy().tolist()
TRUTH = iris_frame()["target"].tolist()


def serve(model_dir: Path, **settings: Any) -> contextlib.AbstractContextManager[TestClient]:
    config = ServerConfig(model_ref=str(model_dir), drift_interval=3600, **settings)

    @contextlib.contextmanager
    def running() -> Iterator[TestClient]:
        with TestClient(create_app(config), raise_server_exceptions=False) as c:
            wait_ready(c)
            yield c

    return running()


def predict(client: TestClient, rows: list[list[float]], rid: str | None = None) -> Any:
    headers = {"X-Request-Id": rid} if rid else {}
    answer = client.post("/predict", json={"data": rows}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def samples(client: TestClient, name: str) -> list[tuple[dict[str, str], float]]:
    text = client.get("/metrics").text
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def gauge(client: TestClient, name: str, **labels: str) -> float | None:
    for found, value in samples(client, name):
        if all(found.get(k) == v for k, v in labels.items()):
            return value
    return None


def test_a_label_joins_its_prediction_and_shows_as_quality_by_the_next_scrape(
    iris_model_dir: Path,
) -> None:
    with serve(iris_model_dir, quality_window=50) as client:
        answer = predict(client, ROWS[:10])
        rid, predicted = answer["request_id"], answer["predictions"]
        wrong = next(c for c in (0, 1, 2) if c != predicted[0])
        labels = [{"request_id": rid, "index": i, "truth": predicted[i]} for i in range(10)]
        labels[0]["truth"] = wrong  # one of ten wrong
        report = client.post("/feedback", json=labels)
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["accepted"] == 10 and body["invalid"] == body["not_found"] == 0
        assert [r["outcome"] for r in body["results"]] == ["accepted"] * 10

        assert gauge(client, "mlops_model_quality", model_version="3", metric="accuracy") == 0.9
        f1 = gauge(client, "mlops_model_quality", model_version="3", metric="f1_macro")
        assert f1 is not None and 0 < f1 < 1
        assert gauge(client, "mlops_model_quality", window="50", metric="accuracy") == 0.9
        assert gauge(client, "mlops_label_coverage_ratio", model_version="3") == 1.0
        # Beside it, the version's own held-out figure (from its run, baked into the image),
        # which the quality alert compares it with.
        assert gauge(client, "mlops_model_validation", model_version="3", metric="accuracy") == 0.96

        # The same row again: the later label wins, and it is counted as a relabel.
        again = client.post(
            "/feedback", json={"request_id": rid, "index": 0, "truth": predicted[0]}
        )
        assert again.status_code == 200 and again.json()["relabelled"] == 1
        assert gauge(client, "mlops_model_quality", model_version="3", metric="accuracy") == 1.0
        assert gauge(client, "mlops_feedback_total", outcome="relabelled") == 1
        assert gauge(client, "mlops_feedback_total", outcome="accepted") == 10

        # Rows predicted but not labelled lower the coverage.
        predict(client, ROWS[10:20])
        assert gauge(client, "mlops_label_coverage_ratio", model_version="3") == 0.5


def test_each_item_of_a_list_gets_its_own_verdict(iris_model_dir: Path) -> None:
    with serve(iris_model_dir) as client:
        rid = predict(client, ROWS[:2], rid="client-chosen-7")["request_id"]
        assert rid == "client-chosen-7"
        items = [
            {"request_id": rid, "index": 1, "truth": 2},
            {"request_id": "never-answered", "truth": 1},
            {"request_id": rid, "index": 5, "truth": 1},  # the request had two rows
            {"request_id": rid, "index": 0, "truth": "setosa"},  # the classes are integers
            {"request_id": rid, "index": -1, "truth": 1},
            {"request_id": rid, "index": 0},  # no truth
            {"request_id": 7, "truth": 1},
            "not an object",
            {"request_id": rid, "truth": 0},  # index defaults to 0
        ]
        report = client.post("/feedback", json=items)
        assert report.status_code == 200, report.text
        body = report.json()
        outcomes = [r["outcome"] for r in body["results"]]
        assert outcomes == [
            "accepted",
            "not_found",
            "not_found",
            "invalid",
            "invalid",
            "invalid",
            "invalid",
            "invalid",
            "accepted",
        ]
        assert (body["accepted"], body["not_found"], body["invalid"]) == (2, 2, 5)
        assert "not one of the model's classes" in body["results"][3]["message"]
        assert all(r.get("message") for r in body["results"] if r["outcome"] != "accepted")


def test_a_single_label_that_is_not_taken_is_an_error_that_names_why(
    iris_model_dir: Path,
) -> None:
    with serve(iris_model_dir) as client:
        rid = predict(client, ROWS[:1])["request_id"]
        missing = client.post("/feedback", json={"request_id": "nope", "truth": 1})
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found"
        assert "nope" in missing.json()["error"]["message"]
        wrong = client.post("/feedback", json={"request_id": rid, "truth": [1, 2]})
        assert wrong.status_code == 422
        assert wrong.json()["error"]["type"] == "invalid_label"
        assert wrong.json()["error"]["details"]["results"][0]["outcome"] == "invalid"

        for body, content_type, status in [
            (b"{not json", "application/json", 400),
            (b"[]", "application/json", 400),
            (b'"a string"', "application/json", 400),
            (b"request_id,truth\nx,1\n", "text/csv", 415),
        ]:
            answer = client.post("/feedback", content=body, headers={"content-type": content_type})
            assert answer.status_code == status, (body, answer.text)
            assert answer.json()["error"]["message"]
        # Numbers no JSON answer can carry back are refused, never a 500.
        for body in (
            b'{"request_id": 1e400, "truth": 0}',
            b'[{"request_id": "a", "index": -1e400, "truth": 0}]',
            b'[{"request_id": "a", "index": 10000000000000000000000, "truth": 1e400}]',
            b'{"request_id": "%s", "truth": 7}' % rid.encode(),  # not one of the classes
        ):
            answer = client.post(
                "/feedback", content=body, headers={"content-type": "application/json"}
            )
            assert answer.status_code in (200, 400, 404, 422), (body, answer.text)
            assert "invalid" in answer.text or "error" in answer.text
        too_many = [{"request_id": rid, "truth": 1}] * 11
        with serve(iris_model_dir, max_rows=10) as small:
            assert small.post("/feedback", json=too_many).status_code == 413


def test_the_log_holds_each_row_and_label_in_json_lines(
    iris_model_dir: Path, tmp_path: Path
) -> None:
    with serve(iris_model_dir, log_dir=str(tmp_path)) as client:
        answer = predict(client, ROWS[:3], rid="logged-1")
        client.post("/feedback", json={"request_id": "logged-1", "index": 2, "truth": TRUTH[2]})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if list(read_records(tmp_path, "feedback")) and gauge(
                client, "mlops_prediction_log_rows_total", kind="predictions"
            ):
                break
            time.sleep(0.05)
        assert client.get("/ready").json()["prediction_log"] == "ok"
    rows = list(read_records(tmp_path, "predictions"))
    assert [(r["request_id"], r["index"]) for r in rows] == [("logged-1", i) for i in range(3)]
    assert [r["prediction"] for r in rows] == answer["predictions"]
    assert rows[0]["inputs"] == dict(zip(FEATURES, ROWS[0], strict=True))
    assert {r["version"] for r in rows} == {"3"} and {r["model"] for r in rows} == {"iris"}
    for r in rows:  # a forest gives its class probabilities with the class: both are kept
        proba = r["probabilities"]
        assert set(proba) == {"0", "1", "2"} and abs(sum(proba.values()) - 1) < 1e-4
        assert int(max(proba, key=proba.__getitem__)) == r["prediction"]
    labels = list(read_records(tmp_path, "feedback"))
    assert [(r["request_id"], r["index"], r["truth"]) for r in labels] == [
        ("logged-1", 2, TRUTH[2])
    ]
    # Plain JSON lines: another tool reads them as they are.
    import pandas as pd

    frame = pd.concat(pd.read_json(p, lines=True) for p in log_files(tmp_path, "predictions"))
    assert len(frame) == 3 and set(frame.columns) >= {"request_id", "index", "prediction"}


def test_a_new_server_on_the_same_log_judges_labels_by_the_version_that_answered(
    iris_model_dir: Path, tmp_path: Path
) -> None:
    """As after a version switch: the rows answered before are read back from the log, and
    their labels count for the version that made them, with labels given before kept."""
    with serve(iris_model_dir, log_dir=str(tmp_path)) as first:
        answer = predict(first, ROWS[:4], rid="before-switch")
        first.post("/feedback", json={"request_id": "before-switch", "index": 0, "truth": 0})
    with serve(iris_model_dir, log_dir=str(tmp_path)) as second:
        deadline = time.monotonic() + 30
        while True:
            report = second.post(
                "/feedback",
                json=[
                    {"request_id": "before-switch", "index": i, "truth": p}
                    for i, p in enumerate(answer["predictions"])
                ],
            )
            if report.json()["not_found"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert report.json()["relabelled"] == 1, report.text  # row 0 had its label already
        assert report.json()["accepted"] == 3


def test_sampling_logs_a_share_of_requests_and_still_judges_every_label(
    iris_model_dir: Path, tmp_path: Path
) -> None:
    with serve(iris_model_dir, log_dir=str(tmp_path), log_sample=0.25) as client:
        ids = [predict(client, ROWS[:1], rid=f"req-{i}")["request_id"] for i in range(200)]
        report = client.post("/feedback", json=[{"request_id": r, "truth": 0} for r in ids])
        assert report.json()["not_found"] == 0
    logged = {r["request_id"] for r in read_records(tmp_path, "predictions")}
    assert 20 <= len(logged) <= 80  # a quarter of 200, decided by each id's hash
    assert logged <= set(ids)


@pytest.fixture
def tiny_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB filesystem (tmpfs), to fill up and to turn read-only."""
    where = tmp_path / "volume"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        service_missing(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_then_read_only_volume_degrades_logging_and_never_a_prediction(
    iris_model_dir: Path, tiny_volume: Path
) -> None:
    with serve(
        iris_model_dir,
        log_dir=str(tiny_volume),
        log_file_bytes=16 * 1024,
        log_max_bytes=1024 * 1024,  # above the volume's size: the disk fills before the cap
    ) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").json().get("prediction_log") == "ok":
            assert time.monotonic() < deadline, "the volume never filled"
            predict(client, ROWS[:50])  # every prediction is answered while the disk fills
        ready = client.get("/ready").json()
        assert ready["status"] == "ready"
        assert ready["prediction_log"].startswith("degraded:")
        assert "No space left" in ready["prediction_log"]
        assert gauge(client, "mlops_prediction_log_degraded") == 1
        dropped = gauge(client, "mlops_prediction_log_dropped_total", reason="write_error")
        assert dropped and dropped > 0
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_volume)], check=True)
        for _ in range(20):
            predict(client, ROWS[:5])
        assert client.post("/feedback", json={"request_id": "x", "truth": 1}).status_code == 404
        assert client.get("/ready").json()["status"] == "ready"
        # What was written before the disk filled is whole JSON lines, readable.
        assert list(read_records(tiny_volume, "predictions"))

        # Room again: logging comes back by itself (it tries again every 5 s).
        subprocess.run(["mount", "-o", "remount,rw", str(tiny_volume)], check=True)
        for path in log_files(tiny_volume):
            path.unlink()
        deadline = time.monotonic() + 60
        while client.get("/ready").json()["prediction_log"] != "ok":
            assert time.monotonic() < deadline, client.get("/ready").json()
            predict(client, ROWS[:1])
            time.sleep(0.5)
        assert gauge(client, "mlops_prediction_log_degraded") == 0
