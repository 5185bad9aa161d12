"""Same model, same input: our /invocations answers exactly what `mlflow models serve` answers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.server.conftest import FEATURES, iris_frame

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_serve(iris_model_dir: Path) -> Iterator[str]:
    port = services.free_port()
    log = iris_model_dir.parent / "mlflow-serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "models",
                "serve",
                "-m",
                str(iris_model_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "--env-manager",
                "local",
                "-w",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=services.env_with_venv_on_path(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        services._wait_http(f"{url}/ping", proc, log, 120, "mlflow models serve")
        yield url
    finally:
        services._stop(proc)


def payloads() -> list[tuple[str, dict[str, str], bytes]]:
    import json

    frame = iris_frame()[FEATURES].sample(n=60, random_state=0)
    rows = frame.values.tolist()
    js = {"content-type": "application/json"}
    return [
        (
            "dataframe_split",
            js,
            json.dumps({"dataframe_split": frame.to_dict(orient="split", index=False)}).encode(),
        ),
        (
            "dataframe_records",
            js,
            json.dumps({"dataframe_records": frame.to_dict(orient="records")}).encode(),
        ),
        (
            "instances-records",
            js,
            json.dumps({"instances": frame.to_dict(orient="records")}).encode(),
        ),
        ("inputs-columns", js, json.dumps({"inputs": frame.to_dict(orient="list")}).encode()),
        (
            "split-reordered",
            js,
            json.dumps(
                {"dataframe_split": {"columns": FEATURES[::-1], "data": [r[::-1] for r in rows]}}
            ).encode(),
        ),
        ("csv", {"content-type": "text/csv"}, frame.to_csv(index=False).encode()),
    ]


@pytest.mark.parametrize("case", payloads(), ids=lambda c: c[0])
def test_same_predictions_as_mlflow_models_serve(
    case: tuple[str, dict[str, str], bytes], mlflow_serve: str, served_model: str
) -> None:
    _, headers, body = case
    theirs = httpx.post(f"{mlflow_serve}/invocations", content=body, headers=headers, timeout=60)
    ours = httpx.post(f"{served_model}/invocations", content=body, headers=headers, timeout=60)
    assert theirs.status_code == 200, theirs.text
    assert ours.status_code == 200, ours.text
    assert ours.json() == theirs.json()
    assert len(ours.json()["predictions"]) == 60


def test_both_refuse_a_missing_column_with_mlflow_error_keys(
    mlflow_serve: str, served_model: str
) -> None:
    body = {"dataframe_split": {"columns": FEATURES[:3], "data": [[1.0, 2.0, 3.0]]}}
    theirs = httpx.post(f"{mlflow_serve}/invocations", json=body, timeout=60)
    ours = httpx.post(f"{served_model}/invocations", json=body, timeout=60)
    assert theirs.status_code == 400 and ours.status_code == 422
    assert theirs.json()["error_code"] == ours.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "petal_width" in ours.json()["message"]
