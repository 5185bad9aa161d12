"""Drift statistics against scipy's ks_2samp and a hand-computed PSI."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from server import ks
from server.drift import DriftMonitor, DriftReference, FeatureDrift, psi


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


# The incremental counts against a direct computation on the same window, after any history.

TIES = [-1.0, 0.0, 0.5, 1.0, 2.0]  # shared by samples, edges and inputs, so ties are common
VALUES = st.one_of(
    st.sampled_from(TIES),
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0]),
)


def reference_of(columns: dict[str, tuple[list[float], list[float]]]) -> DriftReference:
    """A reference from (sample, training values) per feature: deciles of the training values."""
    features = {}
    for name, (sample, train) in columns.items():
        values = np.asarray(train)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, 11)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        features[name] = {
            "edges": edges.tolist(),
            "expected": (counts / counts.sum()).tolist(),
            "sample": sample,
        }
    return DriftReference.from_dict({"format": "mlops-drift-reference/1", "features": features})


def direct(reference: DriftReference, name: str, window: np.ndarray) -> tuple[float, ...] | None:
    """PSI and ks_2samp on the window's finite values, from scratch (None: no finite value)."""
    values = window[np.isfinite(window)]
    if not len(values):
        return None
    ref = reference.features[name]
    with warnings.catch_warnings():  # scipy says when its exact count gives up; so do we not
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ks_2samp(values, ref.sample)
    return psi(ref.expected, ref.edges, values), float(result.statistic), float(result.pvalue)


def assert_same(got: list[FeatureDrift], reference: DriftReference, rows: list[list[Any]]) -> None:
    window = np.asarray(rows, dtype=float)
    expected = {
        name: figures
        for j, name in enumerate(reference.features)
        if (figures := direct(reference, name, window[:, j])) is not None
    }
    assert [r.feature for r in got] == list(expected)
    for r in got:
        want = expected[r.feature]
        assert (r.psi, r.ks, r.ks_pvalue) == pytest.approx(want, abs=1e-12, nan_ok=True)


@st.composite
def histories(draw: st.DrawFn) -> tuple[DriftReference, int, list[tuple[list[list[Any]], bool]]]:
    """A reference of three features (one constant in use), a window size, and a sequence of
    (batch, compute after it?) that wraps the window many times."""
    window = draw(st.integers(3, 40))
    columns = {
        name: (
            draw(
                st.lists(
                    st.one_of(st.sampled_from(TIES), st.floats(-3, 3)), min_size=1, max_size=30
                )
            ),
            draw(st.lists(st.floats(-3, 3), min_size=1, max_size=40)),
        )
        for name in ("a", "b", "constant")
    }
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        size = draw(st.one_of(st.integers(1, max(window // 4, 1)), st.integers(1, 3 * window)))
        constant = draw(st.sampled_from(TIES))
        batch = [[draw(VALUES), draw(VALUES), constant] for _ in range(size)]
        steps.append((batch, draw(st.booleans())))
    return reference_of(columns), window, steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_incremental_figures_equal_a_direct_computation_after_any_history(
    history: tuple[DriftReference, int, list[tuple[list[list[Any]], bool]]],
) -> None:
    reference, window, steps = history
    monitor = DriftMonitor(reference, ["b", "unused", "a", "constant"], window=window, min_rows=1)
    seen: list[list[Any]] = []
    for batch, compute in steps:
        monitor.observe([[b, "x", a, c] for a, b, c in batch])
        seen.extend(batch)
        if compute:
            got = monitor.compute(force=True) or []
            # the window is the last `window` rows observed, in the reference's feature order
            last = seen[-window:]
            assert_same(
                sorted(got, key=lambda r: ["a", "b", "constant"].index(r.feature)), reference, last
            )


def test_a_large_window_wrapping_in_batches_keeps_scipys_figures() -> None:
    """Sizes where ks_2samp is exact with unequal samples (2,000 vs 300), then the window
    fills with a shifted distribution batch by batch."""
    rng = np.random.default_rng(7)
    train = rng.normal(size=5000)
    reference = reference_of({"x": (rng.choice(train, 300).round(2).tolist(), train.tolist())})
    monitor = DriftMonitor(reference, ["x"], window=2000)
    seen: list[list[Any]] = []
    for step in range(30):
        batch = [[v] for v in rng.normal(step / 20, 1, size=int(rng.integers(1, 700))).round(2)]
        monitor.observe(batch)
        seen.extend(batch)
        if step % 3 == 0:
            assert_same(monitor.compute() or [], reference, seen[-2000:])


def test_asymptotic_p_value_above_ten_thousand_values() -> None:
    rng = np.random.default_rng(8)
    train = rng.normal(size=12000)
    reference = reference_of({"x": (train[:10001].tolist(), train.tolist())})
    monitor = DriftMonitor(reference, ["x"], window=300)
    rows = [[v] for v in rng.normal(0.1, 1, size=300)]
    monitor.observe(rows)
    assert_same(monitor.compute() or [], reference, rows)


def test_a_sample_holding_nan_gives_nan_as_ks_2samp_does() -> None:
    reference = reference_of({"x": ([0.0, math.nan, 1.0], [0.0, 1.0, 2.0])})
    monitor = DriftMonitor(reference, ["x"], window=10, min_rows=1)
    monitor.observe([[0.5], [1.5]])
    (result,) = monitor.compute() or []
    assert math.isnan(result.ks) and math.isnan(result.ks_pvalue)
    assert_same([result], reference, [[0.5], [1.5]])


def test_without_scipys_exact_count_ks_2samp_itself_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ks, "_EXACT", None)
    rng = np.random.default_rng(9)
    train = rng.normal(size=1000)
    reference = reference_of({"x": (train[:100].tolist(), train.tolist())})
    monitor = DriftMonitor(reference, ["x"], window=200, min_rows=1)
    rows = [[v] for v in rng.normal(0.3, 1, size=250)]
    monitor.observe(rows)
    assert_same(monitor.compute() or [], reference, rows[-200:])


def test_where_scipys_exact_count_gives_up_the_asymptotic_answer_is_taken_as_scipy_does() -> None:
    """5 vs 5 values at D = 0.2: scipy's exact count overshoots 1, so it warns and goes on
    with the asymptotic formula; the monitor gives the same figures (without the warning)."""
    reference = reference_of({"x": ([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0])})
    monitor = DriftMonitor(reference, ["x"], window=5, min_rows=1)
    rows = [[1.5], [2.0], [3.0], [4.0], [5.0]]
    monitor.observe(rows)
    with pytest.warns(RuntimeWarning, match="Exact calculation unsuccessful"):
        ks_2samp([1.5, 2.0, 3.0, 4.0, 5.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert_same(monitor.compute() or [], reference, rows)
