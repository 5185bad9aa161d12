"""The canary's ``--check`` expressions: what they parse to, what they refuse, how they judge."""

from __future__ import annotations

import math

import pytest

from backends.canary.checks import (
    METRICS,
    Check,
    CheckResult,
    Verdict,
    evaluate,
    parse_check,
    parse_checks,
)
from backends.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("error_ratio<0.01", Check("error_ratio", "<", 0.01)),
        ("p99<0.25", Check("p99", "<", 0.25)),
        ("accuracy>=stable-0.02", Check("accuracy", ">=", 0.02, "stable-")),
        ("  p99  <  250ms ", Check("p99", "<", 0.25)),
        ("p95<=0.5s", Check("p95", "<=", 0.5)),
        ("p50 < stable + 20ms", Check("p50", "<", 0.02, "stable+")),
        ("p99<stable*1.5", Check("p99", "<", 1.5, "stable*")),
        ("f1_macro > stable", Check("f1_macro", ">", 0.0, "stable")),
        ("error_ratio<1%", Check("error_ratio", "<", 0.01)),
        ("request_rate>0.5", Check("request_rate", ">", 0.5)),
        ("mae<=1e-1", Check("mae", "<=", 0.1)),
        ("rmse<stable*1.1", Check("rmse", "<", 1.1, "stable*")),
        ("accuracy>=.9", Check("accuracy", ">=", 0.9)),
    ],
)
def test_checks_parse_as_the_issue_writes_them(text: str, check: Check) -> None:
    parsed = parse_check(text)
    assert parsed.metric == check.metric and parsed.op == check.op
    assert parsed.relative == check.relative
    assert parsed.amount == pytest.approx(check.amount)
    # The canonical expression reads back to the very same check (it is what is persisted).
    assert parse_check(parsed.expression) == parsed


def test_every_metric_is_known() -> None:
    assert METRICS == (
        "error_ratio",
        "request_rate",
        "p50",
        "p95",
        "p99",
        "accuracy",
        "f1_macro",
        "mae",
        "rmse",
    )
    for metric in METRICS:
        assert parse_check(f"{metric}<=stable").metric == metric


def test_describe_is_for_people() -> None:
    assert parse_check("p99<250ms").describe() == "p99 < 0.25 s"
    assert parse_check("accuracy>=stable-0.02").describe() == "accuracy ≥ stable - 0.02"
    assert parse_check("p99<=stable*1.2").describe() == "p99 ≤ stable * 1.2"
    assert parse_check("error_ratio<0.01").describe() == "error_ratio < 0.01"
    assert parse_check("request_rate>1").describe() == "request_rate > 1/s"
    assert parse_check("p50>stable").describe() == "p50 > stable"


def test_an_unknown_metric_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_check("p90<0.25")
    message = caught.value.message
    assert "unknown metric 'p90'" in message
    for metric in METRICS:
        assert metric in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected METRIC OP VALUE"),
        ("   ", "expected METRIC OP VALUE"),
        ("<0.25", "expected METRIC OP VALUE"),
        ("p99", "expected <, <=, > or >= after p99"),
        ("p99 0.25", "expected <, <=, > or >= after p99"),
        ("p99=0.25", "'=' is not an operator"),
        ("p99==0.25", "'==' is not an operator"),
        ("p99!=0.25", "'!=' is not an operator"),
        ("p99=<0.25", "'=<' is not an operator"),
        ("p99<", "nothing after the operator"),
        ("p99<fast", "'fast' is not a number"),
        ("p99<-0.1", "without a sign"),
        ("p99<0.25 s extra", "is not a number"),
        ("p99<1h", "is not a number"),
        ("mae<1ms", "not a latency"),
        ("error_ratio<1s", "not a latency"),
        ("p99<5%", "not one"),
        ("error_ratio<5", "between 0 and 1"),
        ("accuracy>=95", "write 0.95 or 95%"),
        ("p99<stable+", "expected a number after stable+"),
        ("p99<stable*2ms", "takes no unit"),
        ("p99<stable*0", "a factor of 0"),
        ("p99<stable+-1", "without a sign"),
        ("p99<stable/2", "is not a number, nor stable"),
        ("p99<nan", "is not a number"),
        ("p99<inf", "is not a number"),
    ],
)
def test_malformed_checks_are_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_check(text)
    assert problem in caught.value.message
    assert caught.value.title == "Invalid check"


def test_a_check_given_twice_is_refused() -> None:
    assert len(parse_checks(["p99<0.25", "p99<stable*1.5"])) == 2
    with pytest.raises(InvalidInput, match="given twice"):
        parse_checks(["p99<0.25", "p99 < 250ms"])


def test_absolute_checks_judge_the_canary_alone() -> None:
    check = parse_check("p99<0.25")
    assert check.judge(0.1) is Verdict.PASS
    assert check.judge(0.25) is Verdict.FAIL  # strict: equal is not below
    assert check.judge(0.3, stable_value=None) is Verdict.FAIL  # no stable figure needed
    assert parse_check("p99<=0.25").judge(0.25) is Verdict.PASS
    assert parse_check("accuracy>0.9").judge(0.9) is Verdict.FAIL
    assert parse_check("accuracy>=0.9").judge(0.9) is Verdict.PASS


def test_relative_checks_use_the_stable_figure_of_the_same_evaluation() -> None:
    check = parse_check("accuracy>=stable-0.02")
    assert check.threshold(0.95) == pytest.approx(0.93)
    assert check.judge(0.94, 0.95) is Verdict.PASS
    assert check.judge(0.92, 0.95) is Verdict.FAIL
    slower = parse_check("p99<stable*1.5")
    assert slower.judge(0.14, 0.1) is Verdict.PASS
    assert slower.judge(0.16, 0.1) is Verdict.FAIL
    plus = parse_check("p99<=stable+50ms")
    assert plus.judge(0.15, 0.1) is Verdict.PASS
    assert plus.judge(0.151, 0.1) is Verdict.FAIL
    same = parse_check("error_ratio<=stable")
    assert same.judge(0.01, 0.01) is Verdict.PASS
    assert same.judge(0.02, 0.01) is Verdict.FAIL


@pytest.mark.parametrize(
    ("text", "canary", "stable"),
    [
        ("p99<0.25", None, 0.1),  # no traffic on the canary
        ("p99<0.25", math.nan, 0.1),  # NaN, as a PromQL answer without traffic
        ("accuracy>=stable-0.02", 0.9, None),  # no labels for stable yet
        ("accuracy>=stable-0.02", 0.9, math.nan),
        ("accuracy>=stable-0.02", None, None),  # source down
    ],
)
def test_a_missing_figure_is_inconclusive(
    text: str, canary: float | None, stable: float | None
) -> None:
    assert parse_check(text).judge(canary, stable) is Verdict.INCONCLUSIVE


def test_evaluate_gives_the_figures_and_a_line_for_the_history() -> None:
    checks = parse_checks(["error_ratio<0.01", "p99<0.25", "accuracy>=stable-0.02"])
    canary = {"error_ratio": 0.002, "p99": 0.081, "accuracy": 0.91}
    stable = {"error_ratio": 0.0, "p99": 0.07, "accuracy": 0.95}
    results = evaluate(checks, canary, stable)
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.PASS, Verdict.FAIL]
    assert [r.line for r in results] == [
        "error_ratio 0.002 < 0.01 ✓",
        "p99 0.081 s < 0.25 s ✓",
        "accuracy 0.91 ≥ 0.93 (stable 0.95 - 0.02) ✗",
    ]
    # An absolute check keeps no stable figure: it did not decide anything.
    assert results[0].stable is None and results[2].stable == 0.95


def test_evaluate_treats_a_missing_metric_as_no_figure() -> None:
    (result,) = evaluate(parse_checks(["p99<stable*2"]), {"p99": 0.1}, {})
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.threshold is None
    assert result.line == "p99 0.1 s < n/a (stable n/a * 2) ?"
    (nan,) = evaluate(parse_checks(["p99<1"]), {"p99": math.nan}, {})
    assert nan.canary is None and nan.line == "p99 n/a < 1 s ?"


def test_check_results_round_trip_through_plain_values() -> None:
    for result in evaluate(
        parse_checks(["p99<250ms", "accuracy>=stable-0.02", "mae<stable"]),
        {"p99": 0.3, "accuracy": 0.9},
        {"accuracy": 0.91, "mae": 1.5},
    ):
        assert CheckResult.from_dict(result.to_dict()) == result
    with pytest.raises(InvalidInput):
        CheckResult.from_dict({"check": "p99<1", "verdict": "maybe"})
    with pytest.raises(InvalidInput):
        CheckResult.from_dict({"check": "p99<1", "verdict": "pass", "canary": "fast"})
