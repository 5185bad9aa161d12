"""Drift statistics against scipy's ks_2samp and a hand-computed PSI."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from server.drift import DriftMonitor, DriftReference, psi


def test_psi_matches_a_hand_computation() -> None:
    edges = np.array([1.0, 2.0])  # bins: (-inf,1) [1,2) [2,inf)
    expected = np.array([0.25, 0.5, 0.25])
    values = np.array([0.5, 0.5, 1.5, 2.5])  # actual proportions 0.5, 0.25, 0.25
    hand = (0.5 - 0.25) * math.log(0.5 / 0.25) + (0.25 - 0.5) * math.log(0.25 / 0.5) + 0.0
    assert psi(expected, edges, values) == pytest.approx(hand, rel=1e-12)
    assert psi(expected, edges, np.array([0.5, 1.5, 1.5, 2.5])) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_an_empty_bin_is_finite() -> None:
    value = psi(np.array([0.5, 0.5]), np.array([0.0]), np.array([1.0, 2.0]))
    assert math.isfinite(value) and value > 1


def reference(rng: np.random.Generator) -> DriftReference:
    train = rng.normal(0, 1, size=5000)
    edges = np.unique(np.quantile(train, np.linspace(0, 1, 11)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, train, side="right"), minlength=len(edges) + 1)
    return DriftReference.from_dict(
        {
            "format": "mlops-drift-reference/1",
            "features": {
                "x": {
                    "edges": edges.tolist(),
                    "expected": (counts / counts.sum()).tolist(),
                    "sample": rng.choice(train, 500, replace=False).tolist(),
                }
            },
        }
    )


def test_monitor_ks_equals_scipy_and_flags_only_shifted_data() -> None:
    rng = np.random.default_rng(0)
    ref = reference(rng)
    calm = DriftMonitor(ref, ["x", "other"], window=400)
    same = rng.normal(0, 1, size=400)
    calm.observe([[v, "ignored"] for v in same])
    (result,) = calm.compute() or []
    expected = ks_2samp(same, ref.features["x"].sample)
    assert result.ks == pytest.approx(expected.statistic)
    assert result.ks_pvalue == pytest.approx(expected.pvalue)
    assert result.psi < 0.1 and not result.drifted

    shifted = DriftMonitor(ref, ["x"], window=400)
    shifted.observe([[v] for v in rng.normal(1.5, 1, size=400)])
    (moved,) = shifted.compute() or []
    assert moved.psi > 0.2 and moved.ks_pvalue < 0.05 and moved.drifted


def test_window_is_bounded_and_forgets_old_rows() -> None:
    rng = np.random.default_rng(1)
    monitor = DriftMonitor(reference(rng), ["x"], window=100, min_rows=10)
    assert monitor.compute() is None  # nothing seen yet
    monitor.observe([[5.0]] * 250)  # far out: drift
    assert monitor.rows_in_window == 100
    assert (monitor.compute() or [])[0].drifted
    for _ in range(7):  # wrap around the ring in odd-sized pieces
        monitor.observe([[v] for v in rng.normal(0, 1, size=17)])
    result = (monitor.compute() or [])[0]
    assert monitor.rows_in_window == 100
    assert result.psi < 0.5  # the 5.0s were overwritten (2 of 100 may remain)


def test_compute_skips_when_nothing_new_arrived() -> None:
    rng = np.random.default_rng(2)
    monitor = DriftMonitor(reference(rng), ["x"], window=100, min_rows=10)
    monitor.observe([[v] for v in rng.normal(size=50)])
    assert monitor.compute() is not None
    assert monitor.compute() is None
    assert monitor.compute(force=True) is not None


def test_bad_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        DriftReference.from_dict({"format": "other", "features": {}})
    with pytest.raises(ValueError, match="inconsistent"):
        DriftReference.from_dict(
            {
                "format": "mlops-drift-reference/1",
                "features": {"x": {"edges": [1.0], "expected": [1.0], "sample": [1.0]}},
            }
        )
