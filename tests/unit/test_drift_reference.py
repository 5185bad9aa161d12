"""The drift reference the example logs: bins, proportions and a bounded sample."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

TRAIN = Path(__file__).resolve().parents[2] / "examples" / "iris" / "train.py"


def load_train_module():
    spec = importlib.util.spec_from_file_location("iris_train", TRAIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_bins_proportions_and_sample_bound() -> None:
    train = load_train_module()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.normal(size=2000) for name in train.FEATURES})
    frame["petal_width"] = rng.integers(0, 3, size=2000).astype(float)  # a discrete feature
    ref = train.drift_reference(frame, sample_size=300, seed=1)

    cont = ref["features"]["sepal_length"]
    assert len(cont["edges"]) == train.DRIFT_BINS - 1
    assert cont["edges"] == sorted(cont["edges"])
    assert np.allclose(cont["expected"], 1 / train.DRIFT_BINS, atol=0.01)
    assert len(cont["sample"]) == 300

    disc = ref["features"]["petal_width"]
    assert len(disc["edges"]) < train.DRIFT_BINS - 1  # duplicate quantiles collapsed
    assert abs(sum(disc["expected"]) - 1) < 1e-12
    assert ref["thresholds"] == {"psi": 0.2, "ks_pvalue": 0.05}


def test_reference_is_deterministic_for_a_seed() -> None:
    train = load_train_module()
    frame = pd.DataFrame({name: np.arange(1000.0) for name in train.FEATURES})
    assert train.drift_reference(frame, 100, 3) == train.drift_reference(frame, 100, 3)
    assert train.drift_reference(frame, 100, 3) != train.drift_reference(frame, 100, 4)
