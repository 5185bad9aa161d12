"""The canary analysis' state machine: steps, failures, pauses, operator commands, persistence."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import pytest

from backends.canary.analysis import (
    Action,
    Decision,
    Plan,
    State,
    Status,
    abort,
    decide,
    parse_steps,
    promote,
    resume,
    start,
)
from backends.canary.checks import CheckResult, evaluate, parse_checks
from backends.errors import Conflict, InvalidInput

CHECKS = parse_checks(["error_ratio<0.01", "p99<0.25", "accuracy>=stable-0.02"])
STABLE = {"error_ratio": 0.001, "p99": 0.07, "accuracy": 0.95}
HEALTHY = {"error_ratio": 0.002, "p99": 0.081, "accuracy": 0.94}
FAULTY = {"error_ratio": 0.2, "p99": 0.081, "accuracy": 0.94}
NO_TRAFFIC: dict[str, float | None] = {"error_ratio": None, "p99": None, "accuracy": 0.94}


def plan(steps: tuple[float, ...] = (10, 25, 50, 100), failure_limit: int = 2) -> Plan:
    return Plan(steps=steps, interval=60.0, failure_limit=failure_limit, checks=CHECKS)


def results(canary: Mapping[str, float | None]) -> tuple[CheckResult, ...]:
    return evaluate(CHECKS, canary, STABLE)


def test_a_healthy_canary_steps_up_to_100_and_is_promoted() -> None:
    state = start(plan())
    assert (state.status, state.step, state.weight, state.failures) == (Status.RUNNING, 0, 10, 0)
    weights, actions = [state.weight], []
    while not state.finished:
        state, decision = decide(state, results(HEALTHY))
        weights.append(state.weight)
        actions.append(decision.action)
        assert decision.weight == state.weight and decision.by == "analysis"

    assert weights == [10, 25, 50, 100]
    assert actions == [Action.STEP_UP, Action.STEP_UP, Action.PROMOTE]
    assert state.status is Status.PROMOTED and state.step == 3
    assert [d.line for d in state.history] == [
        "step 2/4 → 25 %: error_ratio 0.002 < 0.01 ✓, p99 0.081 s < 0.25 s ✓,"
        " accuracy 0.94 ≥ 0.93 (stable 0.95 - 0.02) ✓",
        "step 3/4 → 50 %: error_ratio 0.002 < 0.01 ✓, p99 0.081 s < 0.25 s ✓,"
        " accuracy 0.94 ≥ 0.93 (stable 0.95 - 0.02) ✓",
        "step 4/4 → 100 %, promoted: error_ratio 0.002 < 0.01 ✓, p99 0.081 s < 0.25 s ✓,"
        " accuracy 0.94 ≥ 0.93 (stable 0.95 - 0.02) ✓",
    ]
    with pytest.raises(Conflict, match="already promoted"):
        decide(state, results(HEALTHY))


def test_a_two_step_plan_promotes_after_one_passing_evaluation() -> None:
    state, decision = decide(start(plan((50, 100))), results(HEALTHY))
    assert decision.action is Action.PROMOTE and state.weight == 100


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_a_faulty_canary_aborts_after_exactly_failure_limit_failed_evaluations(limit: int) -> None:
    state = start(plan(failure_limit=limit))
    decisions = []
    while not state.finished:
        state, decision = decide(state, results(FAULTY))
        decisions.append(decision)
    assert len(decisions) == limit
    assert [d.action for d in decisions] == [Action.FAIL_COUNT] * (limit - 1) + [Action.ABORT]
    # A failed evaluation stays at its weight; the abort sends all traffic back to stable.
    assert [d.weight for d in decisions] == [10] * (limit - 1) + [0]
    assert [d.failures for d in decisions] == list(range(1, limit + 1))
    assert state.status is Status.ABORTED and state.weight == 0 and state.step == 0
    assert decisions[-1].line.startswith(
        f"aborted after {limit}/{limit} failed evaluations at 10 % → 0 %: error_ratio 0.2 < 0.01 ✗"
    )


def test_failures_count_over_the_whole_analysis_not_only_in_a_row() -> None:
    state = start(plan(failure_limit=2))
    state, first = decide(state, results(FAULTY))
    assert first.action is Action.FAIL_COUNT and first.weight == 10
    assert first.line.startswith("failed evaluation 1/2, staying at 10 %: error_ratio 0.2")
    state, passed = decide(state, results(HEALTHY))
    assert passed.action is Action.STEP_UP and state.weight == 25 and state.failures == 1
    state, second = decide(state, results(FAULTY))
    assert second.action is Action.ABORT and state.status is Status.ABORTED
    assert "at 25 % → 0 %" in second.line


def test_a_failed_check_outweighs_an_inconclusive_one() -> None:
    mixed = {"error_ratio": 0.5, "p99": None, "accuracy": 0.94}
    state, decision = decide(start(plan()), results(mixed))
    assert decision.action is Action.FAIL_COUNT and state.status is Status.RUNNING


def test_inconclusive_pauses_until_a_person_resumes() -> None:
    state, _ = decide(start(plan()), results(HEALTHY))
    state, paused = decide(state, results(NO_TRAFFIC))
    assert paused.action is Action.PAUSE and state.status is Status.PAUSED
    assert state.weight == 25 and state.failures == 0
    assert paused.line == (
        "paused at 25 %, inconclusive: error_ratio n/a < 0.01 ?, p99 n/a < 0.25 s ?,"
        " accuracy 0.94 ≥ 0.93 (stable 0.95 - 0.02) ✓"
    )
    with pytest.raises(Conflict, match="paused: resume, abort or promote"):
        decide(state, results(HEALTHY))

    state, resumed = resume(state, note="traffic is back")
    assert resumed.action is Action.RESUME and resumed.by == "operator"
    assert resumed.line == "resumed by the operator at 25 %: traffic is back"
    assert state.status is Status.RUNNING and state.weight == 25
    state, stepped = decide(state, results(HEALTHY))
    assert stepped.action is Action.STEP_UP and state.weight == 50
    with pytest.raises(Conflict, match="running, not paused"):
        resume(state)


def test_the_operator_aborts_a_paused_or_running_canary() -> None:
    paused, _ = decide(start(plan()), results(NO_TRAFFIC))
    state, decision = abort(paused)
    assert decision.action is Action.ABORT and decision.by == "operator"
    assert state.status is Status.ABORTED and state.weight == 0
    assert decision.line == "aborted by the operator at 10 % → 0 %"
    running, _ = decide(start(plan()), results(HEALTHY))
    state, decision = abort(running, "wrong model")
    assert decision.line == "aborted by the operator at 25 % → 0 %: wrong model"
    for command in (abort, promote, resume):
        with pytest.raises(Conflict, match="already aborted"):
            command(state)


def test_the_operator_promotes_a_paused_or_running_canary() -> None:
    paused, _ = decide(start(plan()), results(NO_TRAFFIC))
    state, decision = promote(paused, "labels come tomorrow; numbers look fine")
    assert decision.action is Action.PROMOTE and decision.by == "operator"
    assert state.status is Status.PROMOTED and state.weight == 100 and state.step == 3
    assert decision.line == (
        "promoted by the operator at 10 % → 100 %: labels come tomorrow; numbers look fine"
    )
    state, decision = promote(start(plan()))
    assert state.status is Status.PROMOTED and decision.weight == 100


def test_an_evaluation_must_cover_exactly_the_plans_checks() -> None:
    state = start(plan())
    partial = results(HEALTHY)[:2]
    with pytest.raises(InvalidInput, match=re.escape("missing accuracy>=stable-0.02")):
        decide(state, partial)
    other = evaluate(parse_checks(["p50<1"]), HEALTHY, STABLE)
    with pytest.raises(InvalidInput, match="not in the plan p50<1"):
        decide(state, (*results(HEALTHY), *other))
    with pytest.raises(InvalidInput, match="evaluated twice"):
        decide(state, (*results(HEALTHY), results(HEALTHY)[0]))
    # Any order will do; the line follows the plan's order.
    _, decision = decide(state, tuple(reversed(results(HEALTHY))))
    assert decision.line.startswith("step 2/4 → 25 %: error_ratio")


def test_state_round_trips_through_json_at_every_point() -> None:
    state = start(plan((5, 12.5, 100), failure_limit=3))
    seen = [state]
    state, _ = decide(state, results(FAULTY))
    seen.append(state)
    state, _ = decide(state, results(NO_TRAFFIC))
    seen.append(state)
    state, _ = resume(state)
    seen.append(state)
    state, _ = decide(state, results(HEALTHY))
    seen.append(state)
    state, _ = promote(state)
    seen.append(state)
    for s in seen:
        text = s.to_json()
        json.loads(text)  # standard JSON: no NaN
        assert State.from_json(text) == s
        assert json.loads(text)["weight"] == s.weight
    assert State.from_json(seen[2].to_json()).status is Status.PAUSED
    assert [d.action for d in state.history] == [
        Action.FAIL_COUNT,
        Action.PAUSE,
        Action.RESUME,
        Action.STEP_UP,
        Action.PROMOTE,
    ]


def test_a_reattached_state_carries_on_where_it_was() -> None:
    state, _ = decide(start(plan()), results(HEALTHY))
    again = State.from_json(state.to_json())
    assert decide(again, results(HEALTHY)) == decide(state, results(HEALTHY))


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("plan"),
        lambda d: d.update(format=99),
        lambda d: d.update(status="sleeping"),
        lambda d: d.update(step=9),
        lambda d: d.update(weight=33),
        lambda d: d.update(failures=2),  # at the limit, yet running
        lambda d: d.update(step=3),  # running at 100 %
        lambda d: d["plan"].update(steps=[50, 10, 100]),
        lambda d: d["plan"].update(checks=["p90<1"]),
        lambda d: d["history"].append({"action": "dance"}),
    ],
)
def test_a_damaged_state_is_refused(damage: object) -> None:
    state, _ = decide(start(plan()), results(FAULTY))
    data = json.loads(state.to_json())
    damage(data)  # type: ignore[operator]
    with pytest.raises(InvalidInput):
        State.from_json(json.dumps(data))


def test_not_json_is_refused() -> None:
    for text in ("", "[1, 2]", "{not json"):
        with pytest.raises(InvalidInput):
            State.from_json(text)


def test_decisions_round_trip() -> None:
    _, decision = decide(start(plan()), results(NO_TRAFFIC))
    assert Decision.from_dict(decision.to_dict()) == decision
    with pytest.raises(InvalidInput):
        Decision.from_dict({**decision.to_dict(), "by": "cron"})


# ------------------------------------------------------------------------------------ plans


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ((), "no steps"),
        ((10, 10, 100), "steps must rise: 10 comes after 10"),
        ((50, 25, 100), "steps must rise: 25 comes after 50"),
        ((10, 25, 50), "the last step must be 100"),
        ((0, 50, 100), "step 0 is not a weight in (0, 100]"),
        ((-5, 100), "is not a weight"),
        ((10, 150), "step 150 is not a weight"),
        ((10, math.nan, 100), "is not a weight"),
        ((100,), "no step below 100"),
        (("10", 100), "is not a number"),
        ((True, 100), "is not a number"),
    ],
)
def test_plans_with_bad_steps_are_refused(steps: tuple[float, ...], problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Plan(steps=steps, interval=60.0, failure_limit=2, checks=CHECKS)
    assert problem in caught.value.message


def test_plans_with_bad_intervals_limits_or_checks_are_refused() -> None:
    for interval in (0, -1.0, math.inf, math.nan):
        with pytest.raises(InvalidInput, match="interval"):
            Plan((10, 100), interval, 2, CHECKS)
    for limit in (0, -1, 1.5, True):
        with pytest.raises(InvalidInput, match="failure limit"):
            Plan((10, 100), 60.0, limit, CHECKS)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no checks"):
        Plan((10, 100), 60.0, 2, ())
    with pytest.raises(InvalidInput, match="twice"):
        Plan((10, 100), 60.0, 2, (CHECKS[0], CHECKS[0]))


def test_plans_parse_from_the_clis_text() -> None:
    parsed = Plan.parse("10, 25,50,100", "1m", 2, ["error_ratio<0.01", "p99 < 250ms"])
    assert parsed.steps == (10, 25, 50, 100) and parsed.interval == 60.0
    assert [c.expression for c in parsed.checks] == ["error_ratio<0.01", "p99<0.25"]
    assert parse_steps("2.5,10%,100") == (2.5, 10, 100)
    with pytest.raises(InvalidInput, match="step 'ten' is not a number"):
        Plan.parse("ten,100", "1m", 2, ["p99<1"])
    with pytest.raises(InvalidInput, match="steps must rise"):
        Plan.parse("50,25,100", "1m", 2, ["p99<1"])
    with pytest.raises(InvalidInput, match="interval 'soon'"):
        Plan.parse("10,100", "soon", 2, ["p99<1"])
    with pytest.raises(InvalidInput, match="unknown metric 'latency'"):
        Plan.parse("10,100", "30s", 2, ["latency<1"])
    with pytest.raises(InvalidInput, match="step '' is not a number"):
        Plan.parse("10,,100", "30s", 2, ["p99<1"])
