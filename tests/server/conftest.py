"""A real MLflow model directory (iris RandomForest) and an in-process server over it."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from server.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_frame():
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    return frame


def example_train_module():
    spec = importlib.util.spec_from_file_location("iris_train", ROOT / "examples/iris/train.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def iris_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sklearn model saved to disk, with a drift reference and baked metadata."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    frame = iris_frame()
    x, y = frame[FEATURES], frame["target"]
    clf = RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1).fit(x, y)
    path = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(
        clf,
        str(path),
        signature=infer_signature(x, clf.predict(x)),
        input_example=x.head(3),
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )
    reference = example_train_module().drift_reference(x, 500, 0)
    (path / "drift_reference.json").write_text(json.dumps(reference))
    (path / "mlops-model.json").write_text(
        json.dumps({"name": "iris", "version": "3", "run_id": "abc123", "alias": "champion"})
    )
    return path


def wait_ready(client: TestClient, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"server not ready: {client.get('/ready').json()}")


@pytest.fixture
def server_config(iris_model_dir: Path) -> ServerConfig:
    return ServerConfig(
        model_ref=str(iris_model_dir),
        drift_interval=3600,
        max_body_bytes=64_000,
        admin_token="s3cret",
    )


@pytest.fixture
def client(server_config: ServerConfig) -> Iterator[TestClient]:
    with TestClient(create_app(server_config), raise_server_exceptions=False) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="session")
def served_model(iris_model_dir: Path) -> Iterator[str]:
    """`python -m server` as a real process on a free port, serving the model directory."""
    import subprocess
    import sys

    from tests import services

    port = services.free_port()
    log = iris_model_dir.parent / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "--model-uri",
                str(iris_model_dir),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
            env=services.env_with_venv_on_path(MLOPS_ADMIN_TOKEN="s3cret"),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        services._wait_http(f"{url}/ready", proc, log, 60, "python -m server")
        yield url
    finally:
        services._stop(proc)
