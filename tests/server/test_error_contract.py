"""Every client mistake gets the right 4xx and a JSON error naming the problem; never a 500."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

COLS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROW = [5.1, 3.5, 1.4, 0.2]
JSON = {"content-type": "application/json"}

# (route, headers, body, status, error type, a phrase the message must contain)
CASES = [
    ("/predict", JSON, b"{not json", 400, "invalid_json", "not valid JSON"),
    ("/predict", JSON, b"", 400, "invalid_json", "empty"),
    ("/predict", JSON, b"\xff\xfe", 400, "invalid_json", "UTF-8"),
    ("/predict", JSON, b'{"data": [[NaN, 1, 2, 3]]}', 400, "invalid_json", "NaN"),
    ("/predict", JSON, b"[" * 5000 + b"]" * 5000, 400, "invalid_json", "nested"),
    (
        "/predict",
        {"content-type": "text/plain"},
        b'{"data": []}',
        415,
        "unsupported_media_type",
        "text/plain",
    ),
    ("/predict", {}, b'{"data": [[1,2,3,4]]}', 415, "unsupported_media_type", "(none)"),
    ("/predict", JSON, b'{"rows": []}', 400, "invalid_payload", '"data"'),
    ("/predict", JSON, b"[1, 2]", 400, "invalid_payload", "JSON object"),
    ("/predict", JSON, b'{"data": []}', 400, "invalid_payload", "empty"),
    ("/predict", JSON, b'{"data": [1, 2, 3]}', 400, "invalid_payload", "scalars"),
    ("/predict", JSON, b'{"data": "abc"}', 400, "invalid_payload", "list of rows"),
    ("/predict", JSON, b'{"data": [[1, 2, 3]]}', 422, "schema_mismatch", "expects 4"),
    ("/predict", JSON, b'{"data": [[1, 2, 3, 4], [1, 2]]}', 422, "schema_mismatch", "row 1"),
    ("/predict", JSON, b'{"data": [[1, "x", 3, 4]]}', 422, "schema_mismatch", "sepal_width"),
    ("/predict", JSON, b'{"data": [[1, null, 3, 4]]}', 422, "schema_mismatch", "missing value"),
    ("/predict", JSON, b'{"data": [[1, true, 3, 4]]}', 422, "schema_mismatch", "boolean"),
    ("/predict", JSON, b'{"data": [[1, [2], 3, 4]]}', 422, "schema_mismatch", "array"),
    ("/predict", JSON, b'{"data": [[1, 1e999, 3, 4]]}', 422, "schema_mismatch", "finite"),
    (
        "/predict",
        JSON,
        json.dumps(
            {"data": [{"sepal_length": 1, "sepal_wdth": 2, "petal_length": 3, "petal_width": 4}]}
        ).encode(),
        422,
        "schema_mismatch",
        "missing columns: sepal_width",
    ),
    (
        "/predict",
        JSON,
        json.dumps({"data": [dict(zip(COLS, ROW, strict=True)), {"sepal_length": 1}]}).encode(),
        422,
        "schema_mismatch",
        "row 1",
    ),
    (
        "/invocations",
        JSON,
        b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}',
        422,
        "schema_mismatch",
        "unexpected columns: a",
    ),
    (
        "/invocations",
        JSON,
        b'{"instances": [[1,2,3,4]], "inputs": [[1,2,3,4]]}',
        400,
        "invalid_payload",
        "exactly one",
    ),
    (
        "/invocations",
        JSON,
        b'{"dataframe_split": [[1,2,3,4]]}',
        400,
        "invalid_payload",
        "dataframe_split",
    ),
    (
        "/invocations",
        {"content-type": "text/csv"},
        b"sepal_length,sepal_width\n1,2\n",
        422,
        "schema_mismatch",
        "missing columns",
    ),
    ("/invocations", {"content-type": "text/csv"}, b"a,b\n1\n", 422, "schema_mismatch", "row 0"),
    (
        "/invocations",
        {"content-type": "application/xml"},
        b"<x/>",
        415,
        "unsupported_media_type",
        "xml",
    ),
    (
        "/predict",
        JSON,
        b'{"data": [' + b"[1,2,3,4]," * 10_000 + b"[1,2,3,4]]}",
        413,
        "payload_too_large",
        "limit",
    ),
    ("/nope", JSON, b"{}", 404, "not_found", "Not Found"),
]


@pytest.mark.parametrize(
    ("route", "headers", "body", "status", "kind", "phrase"),
    CASES,
    ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)],
)
def test_bad_request_gets_a_named_4xx(
    client: TestClient,
    route: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    kind: str,
    phrase: str,
) -> None:
    response = client.post(route, content=body, headers={**headers, "X-Request-Id": "bad-1"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind
    assert phrase in error["message"], error["message"]
    if route in ("/predict", "/invocations"):  # a refused prediction still names its request
        assert response.headers["x-request-id"] == "bad-1"
    # ...and the server is still healthy and answering correctly afterwards.
    ok = client.post("/predict", json={"data": [ROW]})
    assert ok.status_code == 200 and ok.json()["predictions"] == [0]


def test_invocations_errors_carry_mlflow_keys(client: TestClient) -> None:
    response = client.post("/invocations", json={"instances": [[1, 2]]})
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["message"] == body["error"]["message"]
    bad_json = client.post(
        "/invocations", content=b"{", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error_code"] == "BAD_REQUEST"


def test_errors_are_counted_and_no_500_was_recorded(client: TestClient) -> None:
    for route, headers, body, *_ in CASES:
        client.post(route, content=body, headers=headers)
    metrics = client.get("/metrics").text
    assert 'mlops_prediction_errors_total{endpoint="predict",type="schema_mismatch"}' in metrics
    from backends.prometheus.exposition import parse_exposition

    answered = parse_exposition(metrics).values("mlops_requests_total")
    server_errors = [v for labels, v in answered if labels["status"].startswith("5")]
    # Counted from 0 before the first (Prometheus' increase() needs the zero): all still 0.
    assert server_errors and set(server_errors) == {0.0}, server_errors


def test_wrong_method_is_405_json(client: TestClient) -> None:
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "method_not_allowed"


def test_the_scoring_front_takes_exactly_the_scoring_routes(client: TestClient) -> None:
    # POST /invocations and /predict skip FastAPI's routing (server.app._front_scoring_routes);
    # every other method and path must still be FastAPI's, with our error shapes.
    split = {"dataframe_split": {"columns": COLS, "data": [ROW]}}
    assert client.post("/invocations?x=1", json=split).status_code == 200  # the query is no path
    assert client.post("/predict", json={"data": [ROW]}).json()["request_id"]
    for method in ("GET", "PUT", "DELETE"):
        answered = client.request(method, "/invocations")
        assert answered.status_code == 405, method
        assert answered.json()["error"]["type"] == "method_not_allowed"
    trailing = client.post("/invocations/", json=split, follow_redirects=False)
    assert trailing.status_code in (307, 404)  # FastAPI's own answer, not a prediction
    assert client.post("/invocationsx", json=split).json()["error"]["type"] == "not_found"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("r-42", True),
        ("0f8e2a6c-8d5b-4b0e-9c1a-3f1e2d4c5b6a", True),
        ("a" * 200, True),
        ("a" * 201, False),
        ("", False),
        ("has space", False),
        ("caf\u00e9", False),
        (None, False),
    ],
)
def test_every_prediction_names_its_request(
    client: TestClient, given: str | None, kept: bool
) -> None:
    """X-Request-Id: the client's when it is 1-200 visible ASCII characters, else generated;
    in the header of /predict and /invocations, and in /predict's body."""
    headers = {} if given is None else {"X-Request-Id": given.encode()}
    answer = client.post("/predict", json={"data": [ROW]}, headers=headers)
    assert answer.status_code == 200, answer.text
    rid = answer.headers["x-request-id"]
    assert answer.json()["request_id"] == rid
    if kept:
        assert rid == given
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", rid), rid
    again = client.post("/predict", json={"data": [ROW]}, headers=headers)
    assert kept or again.json()["request_id"] != rid  # generated: one per request
    mlflow_shaped = client.post("/invocations", json={"inputs": [ROW]}, headers=headers)
    assert mlflow_shaped.status_code == 200
    assert set(mlflow_shaped.json()) == {"predictions"}  # MLflow's shape, untouched
    invocation_id = mlflow_shaped.headers["x-request-id"]
    assert invocation_id == given if kept else re.fullmatch(r"[0-9a-f]{32}", invocation_id)
