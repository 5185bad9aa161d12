"""A retraining finds the project its serving run came from, in either form MLflow records."""

from __future__ import annotations

from pathlib import Path

from backends.lifecycle.retrain import project_of

ROOT = Path(__file__).resolve().parents[2]


def test_the_project_from_the_runs_source_name() -> None:
    iris = ROOT / "examples" / "iris"
    # Inside a git checkout, as `mlflow run` and `mlops train` record it.
    assert project_of({"mlflow.source.name": f"file://{ROOT}#examples/iris"}) == iris
    assert project_of({"mlflow.source.name": str(iris)}) == iris  # outside one: the path
    assert project_of({"mlflow.source.name": f"file://{ROOT}#examples/nope"}) is None
    assert project_of({"mlflow.source.name": "train.py"}) is None  # a plain script's run
    assert project_of({}) is None
