"""Judging labels against what was predicted, and the realized quality they add up to."""

from __future__ import annotations

import math

import pytest

from server.feedback import (
    ACCEPTED,
    INVALID,
    NOT_FOUND,
    RELABELLED,
    Outcomes,
    classification_quality,
    regression_quality,
)


def test_a_model_with_no_target_type_takes_no_label() -> None:
    outcomes = Outcomes(None, None)
    outcomes.remember("r", "1", [0.3])
    verdict = outcomes.judge("r", 0, 1)
    assert verdict.outcome == INVALID and "no target type" in verdict.message


def test_a_regressor_takes_finite_numbers_and_gives_mae_and_rmse() -> None:
    outcomes = Outcomes("regressor", None, window=3)
    outcomes.remember("r", "2", [1.0, 2.0, 3.0, 4.0])
    assert outcomes.judge("r", 0, 2.0).outcome == ACCEPTED  # error -1
    assert outcomes.judge("r", 1, 2).outcome == ACCEPTED  # an integer is a number: error 0
    assert outcomes.judge("r", 2, "3").outcome == INVALID
    assert outcomes.judge("r", 2, True).outcome == INVALID
    assert outcomes.judge("r", 2, math.nan).outcome == INVALID
    assert outcomes.judge("r", 2, 10**400).outcome == INVALID  # no float holds it
    assert outcomes.judge("r", 2, 6.0).outcome == ACCEPTED  # error -3
    figures = outcomes.quality()["2"]
    assert figures["mae"] == pytest.approx(4 / 3)
    assert figures["rmse"] == pytest.approx(math.sqrt(10 / 3))
    # The window keeps the latest three: a fourth label pushes the first out.
    assert outcomes.judge("r", 3, 4.0).outcome == ACCEPTED  # error 0
    assert outcomes.quality()["2"]["mae"] == pytest.approx(1.0)
    assert outcomes.coverage()["2"] == 1.0


def test_labels_count_for_the_version_that_answered_and_old_rows_are_forgotten() -> None:
    outcomes = Outcomes("classifier", [0, 1, 2], max_rows=4)
    outcomes.remember("a", "1", [0, 1])
    outcomes.remember("b", "2", [2, 2])
    assert outcomes.judge("a", 1, 1).outcome == ACCEPTED
    assert outcomes.judge("a", 1, 0).outcome == RELABELLED  # the later label wins
    assert outcomes.judge("b", 0, 2).outcome == ACCEPTED
    assert outcomes.quality() == {
        "1": {"accuracy": 0.0, "f1_macro": 0.0},
        "2": {"accuracy": 1.0, "f1_macro": 1.0},
    }
    outcomes.remember("c", "2", [0])  # five rows remembered: "a" (the oldest) goes
    assert outcomes.judge("a", 0, 0).outcome == NOT_FOUND
    assert outcomes.coverage() == {"2": 1 / 3}  # no row of version 1 is remembered now


def test_macro_f1_weighs_every_class_alike() -> None:
    pairs = [(0, 0)] * 8 + [(1, 0), (1, 1)]
    figures = classification_quality(pairs)
    assert figures["accuracy"] == 0.9
    # class 0: tp 8, fp 0, fn 1 → 16/17; class 1: tp 1, fp 1, fn 0 → 2/3
    assert figures["f1_macro"] == pytest.approx((16 / 17 + 2 / 3) / 2)
    assert classification_quality([(1.0, 1)]) == {"accuracy": 1.0, "f1_macro": 1.0}
    # A model answering records: compared as their JSON, never an unhashable error.
    assert classification_quality([({"a": 1}, {"a": 1}), ([1], [2])])["accuracy"] == 0.5
    assert regression_quality([]) == {}
