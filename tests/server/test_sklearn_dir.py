"""A scikit-learn model directory read without MLflow (server/sklearn_dir.py) answers what
``mlflow.pyfunc.load_model(...).predict`` answers, with the same schema and target, and every
case it does not read is left to MLflow."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from server import model as server_model
from server.sklearn_dir import PlainSklearn, load_plain

COLUMNS = ["a", "b", "c", "n"]


def frame(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = pd.DataFrame(rng.normal(size=(rows, 3)), columns=COLUMNS[:3])
    data["n"] = rng.integers(0, 5, size=rows)  # an integer column: a "long" in the signature
    return data


def target(data: pd.DataFrame) -> np.ndarray:
    return ((data.a + data.b > 0).astype(int) + (data.c > 1)).to_numpy()


def save(path: Path, estimator: Any, data: pd.DataFrame, y: Any, **kwargs: Any) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    estimator.fit(data, y)
    kwargs.setdefault("signature", infer_signature(data, estimator.predict(data)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            estimator,
            str(path),
            # Named, not inferred: inference loads each model again in a child process.
            pip_requirements=["scikit-learn"],
            **kwargs,
        )
    return path


def by_mlflow(path: Path) -> Any:
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(str(path))


def same(a: Any, b: Any) -> None:
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    ("kind", "file_format"),
    [
        ("forest", "skops"),
        ("forest", "cloudpickle"),
        ("pipeline", "pickle"),
        ("boosting", "skops"),
        ("regressor", "cloudpickle"),
    ],
)
def test_a_plain_model_answers_as_mlflow_loads_it(
    tmp_path: Path, kind: str, file_format: str
) -> None:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = frame()
    y: Any = target(data)
    estimator: Any = {
        "forest": lambda: RandomForestClassifier(n_estimators=10, random_state=0),
        "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        "boosting": lambda: HistGradientBoostingClassifier(max_iter=10),
        "regressor": lambda: RandomForestRegressor(n_estimators=10, random_state=0),
    }[kind]()
    if kind == "regressor":
        y = data.a.to_numpy() * 2.0
    trusted = None
    if file_format == "skops":
        import skops.io

        estimator.fit(data, y)
        dumped = tmp_path / "probe.skops"
        skops.io.dump(estimator, dumped)
        trusted = skops.io.get_untrusted_types(file=dumped)
    path = save(
        tmp_path / "m",
        estimator,
        data,
        y,
        serialization_format=file_format,
        skops_trusted_types=trusted,
    )
    plain = load_plain(path)
    assert isinstance(plain, PlainSklearn), "a plain model must be read without MLflow"
    reference = by_mlflow(path)
    rows = frame(50, seed=7)
    same(plain.predict(rows), reference.predict(rows))
    assert plain.schema == server_model._input_schema(reference)
    assert plain.run_id == (reference.metadata.run_id or "")
    assert plain.output_type == server_model._output_type(reference)


def test_the_logged_predict_fn_is_the_one_called(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    data = frame()
    path = save(
        tmp_path / "m",
        LogisticRegression(),
        data,
        target(data),
        serialization_format="cloudpickle",
        pyfunc_predict_fn="predict_proba",
    )
    plain = load_plain(path)
    assert plain is not None and plain.predict_fn == "predict_proba"
    rows = frame(20, seed=3)
    same(plain.predict(rows), by_mlflow(path).predict(rows))
    assert np.asarray(plain.predict(rows)).shape == (20, 3)


def test_loading_a_directory_gives_what_the_mlflow_path_gives(tmp_path: Path) -> None:
    """server.model.load: schema, fast path, task and classes as through MLflow."""
    from sklearn.ensemble import RandomForestClassifier

    data = frame()
    path = save(
        tmp_path / "m",
        RandomForestClassifier(n_estimators=5, random_state=0),
        data,
        target(data),
        serialization_format="cloudpickle",
    )
    resolved = server_model._resolve_directory(path)
    loaded = server_model.load(resolved)
    assert isinstance(loaded.pyfunc, PlainSklearn)
    reference = by_mlflow(path)
    assert loaded.schema == server_model._input_schema(reference)
    assert loaded.fast is not None  # the forest fast path reads the plain model too
    assert (loaded.task, loaded.classes) == server_model.target_of(
        reference, server_model._output_type(reference)
    )
    assert loaded.task == "classifier" and loaded.classes == [0, 1, 2]
    rows = frame(30, seed=5)
    fast, _ = loaded.predict_scored(COLUMNS, rows.to_numpy().tolist())
    same(fast, reference.predict(rows))


def rewrite_mlmodel(path: Path, change: Any) -> None:
    import yaml

    meta = yaml.safe_load((path / "MLmodel").read_text())
    change(meta)
    (path / "MLmodel").write_text(yaml.safe_dump(meta))


def test_what_it_does_not_read_is_left_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc
    from sklearn.linear_model import LogisticRegression

    data = frame()
    base = save(
        tmp_path / "base",
        LogisticRegression(),
        data,
        target(data),
        serialization_format="pickle",
    )
    assert load_plain(base) is not None

    def variant(name: str, change: Any) -> Path:
        import shutil

        copy = tmp_path / name
        shutil.copytree(base, copy)
        rewrite_mlmodel(copy, change)
        return copy

    tensor = json.dumps([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}])
    cases = {
        "code paths": variant(
            "code", lambda m: m["flavors"]["python_function"].update(code="code")
        ),
        "a tensor signature": variant("tensor", lambda m: m["signature"].update(inputs=tensor)),
        "a predict_fn of its own": variant(
            "fn", lambda m: m["flavors"]["python_function"].update(predict_fn="transform")
        ),
        "another loader": variant(
            "loader",
            lambda m: m["flavors"]["python_function"].update(loader_module="mlflow.xgboost"),
        ),
        "a data file of its own": variant(
            "data", lambda m: m["flavors"]["python_function"].update(data="model.pkl")
        ),
        "a model config": variant(
            "config", lambda m: m["flavors"]["python_function"].update(model_config={"a": 1})
        ),
        "no model_path": variant(
            "nopath", lambda m: m["flavors"]["python_function"].pop("model_path")
        ),
        "a model registered from outside": variant(
            "external", lambda m: m.update(metadata={"mlflow.model.isExternal": True})
        ),
        "a signature key MLflow may read otherwise": variant(
            "optional", lambda m: m["signature"].update(optional="x")
        ),
        "a file outside the directory": variant(
            "outside",
            lambda m: m["flavors"]["python_function"].update(model_path="../base/model.pkl"),
        ),
        "a format it does not know": variant(
            "format", lambda m: m["flavors"]["sklearn"].update(serialization_format="joblib")
        ),
    }
    for what, path in cases.items():
        assert load_plain(path) is None, what

    # A model of MLflow's own pyfunc kind (not the sklearn flavor).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "type hints": MLflow reads them as it defines it

        class Constant(mlflow.pyfunc.PythonModel):
            def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
                return [1] * len(model_input)

        mlflow.pyfunc.save_model(
            str(tmp_path / "custom"), python_model=Constant(), pip_requirements=[]
        )
    assert load_plain(tmp_path / "custom") is None
    # Not a model directory at all, or an MLmodel that does not read.
    assert load_plain(tmp_path) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "MLmodel").write_text("flavors: [unclosed\n")
    assert load_plain(tmp_path / "broken") is None
    # Deserialization refused by the operator, or a value MLflow does not read: MLflow's to
    # refuse, with its own message.
    for value in ("false", "0", " true"):
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", value)
        assert load_plain(base) is None, value
    monkeypatch.delenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    assert load_plain(base) is not None


def test_mlflow_still_allows_deserialization_when_the_variable_is_unset() -> None:
    """load_plain reads an unset MLFLOW_ALLOW_PICKLE_DESERIALIZATION as MLflow 3.17 does (true):
    a lock bump that changes MLflow's default must change ours too."""
    from mlflow.environment_variables import MLFLOW_ALLOW_PICKLE_DESERIALIZATION

    assert MLFLOW_ALLOW_PICKLE_DESERIALIZATION.default is True
