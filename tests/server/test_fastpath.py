"""The forest fast path answers exactly what pyfunc.predict answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from server.fastpath import NotFast, forest_predictor


def saved(tmp_path: Path, estimator, frame: pd.DataFrame, target: np.ndarray):
    import mlflow.pyfunc
    import mlflow.sklearn

    estimator.fit(frame, target)
    path = tmp_path / type(estimator).__name__
    mlflow.sklearn.save_model(
        estimator,
        str(path),
        skops_trusted_types=["sklearn.tree._tree.Tree"],
        # Named, not inferred: inference loads each model again in a child process.
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )
    return mlflow.pyfunc.load_model(str(path))


@pytest.mark.parametrize(
    "name",
    [
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "RandomForestRegressor",
        "ExtraTreesRegressor",
    ],
)
def test_fast_path_equals_pyfunc(tmp_path: Path, name: str) -> None:
    import sklearn.ensemble

    rng = np.random.default_rng(0)
    cols = ["a", "b", "c"]
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=cols)
    target = (frame.a + frame.b > 0).astype(int).to_numpy() + (frame.c > 1)
    if name.endswith("Regressor"):
        target = frame.a.to_numpy() * 3 + rng.normal(size=300)
    model = saved(
        tmp_path, getattr(sklearn.ensemble, name)(n_estimators=25, random_state=1), frame, target
    )
    fast = forest_predictor(model, cols)
    assert fast is not None
    probe = rng.normal(scale=2, size=(500, 3))
    probe[:5] = [[0, 0, 0], [1e30, -1e30, 0], [1e-40, 0, 0], [1, 1, 1], [-3, 3, 1]]
    expected = model.predict(pd.DataFrame(probe, columns=cols)).tolist()
    assert fast(probe.tolist()) == expected
    with pytest.raises(NotFast):
        fast([[float("nan"), 0.0, 0.0]])


def test_other_models_and_orders_take_the_ordinary_path(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"])
    target = (frame.a > 0).astype(int).to_numpy()
    linear = saved(tmp_path, LogisticRegression(), frame, target)
    assert forest_predictor(linear, ["a", "b"]) is None
    forest = saved(tmp_path, RandomForestClassifier(n_estimators=3), frame, target)
    assert forest_predictor(forest, ["b", "a"]) is None  # columns in another order
    assert forest_predictor(forest, None) is None
