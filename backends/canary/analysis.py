"""The canary's decision at each evaluation: a pure, clock-free state machine.

The canary starts at the plan's first weight. After each interval every check is evaluated on
the canary's figures (against the stable version's where a check says so), and ``decide`` turns
that evaluation into one decision:

- every check passed: ``step_up`` to the next weight; when the next weight is 100, ``promote``.
  Reaching 100 % *is* the promotion, as in Argo Rollouts (a rollout whose steps are done is
  promoted; its background analysis stops there) and Flagger (the analysis that passes at the
  last weight below the maximum promotes). The last evaluation is thus made while the stable
  version still takes traffic, so a check relative to it still has its figures; at 100 % it
  would have none. A plan needs at least one weight below 100 for that reason.
- a check failed: ``fail_count``, staying at the weight; the ``failure_limit``-th failed
  evaluation (cumulative over the whole analysis, as Flagger's threshold and Argo's
  failureLimit count) aborts instead: ``abort``, all traffic back to stable.
- no check failed but one was inconclusive (no traffic, no labels yet, source down): ``pause``
  until a person decides, as an inconclusive Argo analysis pauses its rollout.

A person may ``resume`` a paused analysis (it stays at its weight and evaluates again after the
next interval), or ``abort`` or ``promote`` a running or paused one. Every decision carries a
line with the figures that decided it, for the deployment's history. The state (plan included)
round-trips through JSON, so another process can carry on or reattach.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from backends.canary.checks import Check, CheckResult, Verdict, parse_check, parse_checks
from backends.errors import Conflict, InvalidInput
from backends.prometheus.queries import duration_seconds

__all__ = [
    "Action",
    "By",
    "Decision",
    "Plan",
    "State",
    "Status",
    "abort",
    "abort_for",
    "decide",
    "parse_steps",
    "pause_for",
    "promote",
    "resume",
    "start",
]

FORMAT = 1  # of the JSON state; bump on an incompatible change
By = Literal["analysis", "operator"]


class Status(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # waiting for a person: resume, abort or promote
    ABORTED = "aborted"  # all traffic back on stable
    PROMOTED = "promoted"  # the canary takes all traffic and becomes the stable version


class Action(StrEnum):
    """What the router (and the history) should do after a decision."""

    STEP_UP = "step_up"
    PROMOTE = "promote"
    FAIL_COUNT = "fail_count"
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"


def _plan_error(problem: str) -> InvalidInput:
    return InvalidInput(problem, title="Invalid canary plan")


def _pct(weight: float) -> str:
    return f"{weight:g} %"


@dataclass(frozen=True)
class Plan:
    """Weights (percent of traffic to the canary, strictly rising, the last 100), seconds
    between evaluations, failed evaluations that abort, and the checks of every evaluation."""

    steps: tuple[float, ...]
    interval: float
    failure_limit: int
    checks: tuple[Check, ...]

    def __post_init__(self) -> None:
        steps = self.steps
        if not steps:
            raise _plan_error("no steps: give the canary's weights, e.g. 10,25,50,100")
        for weight in steps:
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise _plan_error(f"step {weight!r} is not a number")
            if not (math.isfinite(weight) and 0 < weight <= 100):
                raise _plan_error(f"step {weight:g} is not a weight in (0, 100]")
        for lower, higher in itertools.pairwise(steps):
            if higher <= lower:
                raise _plan_error(f"steps must rise: {higher:g} comes after {lower:g}")
        if steps[-1] != 100:
            raise _plan_error(f"the last step must be 100 (the promotion), not {steps[-1]:g}")
        if len(steps) < 2:
            raise _plan_error("no step below 100: the canary would be promoted unanalysed")
        if isinstance(self.interval, bool) or not isinstance(self.interval, int | float):
            raise _plan_error(f"interval {self.interval!r} is not a number of seconds")
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise _plan_error(f"interval must be positive, not {self.interval:g} s")
        limit = self.failure_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _plan_error(f"failure limit must be a whole number of 1 or more, not {limit!r}")
        if not self.checks:
            raise _plan_error("no checks: the canary would be promoted unanalysed")
        if len(set(self.checks)) != len(self.checks):
            raise _plan_error("a check is given twice")

    @classmethod
    def parse(cls, steps: str, interval: str, failure_limit: int, checks: Sequence[str]) -> Plan:
        """A plan from the CLI's text: ``10,25,50,100``, ``1m``, 2, ``['p99<0.25']``."""
        try:
            seconds = duration_seconds(interval.strip())
        except InvalidInput:
            raise _plan_error(f"interval {interval!r} is not a duration (try 30s, 1m)") from None
        return cls(parse_steps(steps), seconds, failure_limit, parse_checks(checks))

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "interval": self.interval,
            "failure_limit": self.failure_limit,
            "checks": [c.expression for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Read back ``to_dict``'s output (validated again)."""
        try:
            return cls(
                tuple(data["steps"]),
                data["interval"],
                data["failure_limit"],
                tuple(parse_check(c) for c in data["checks"]),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"not a canary plan: {exc!r}") from exc


def parse_steps(text: str) -> tuple[float, ...]:
    """``10,25,50,100`` as weights (whole numbers come back as ints); InvalidInput otherwise."""
    steps: list[float] = []
    for part in text.split(","):
        item = part.strip().removesuffix("%").strip()
        try:
            weight = float(item)
        except ValueError:
            raise _plan_error(f"step {part.strip()!r} is not a number (try 10,25,50,100)") from None
        steps.append(int(weight) if weight.is_integer() else weight)
    return tuple(steps)


@dataclass(frozen=True)
class Decision:
    """One entry of the analysis' history: what was decided, by whom, the state it left
    (step index, canary weight, failures so far), a human line, and the evaluation behind it."""

    action: Action
    by: By
    step: int
    weight: float
    failures: int
    line: str
    results: tuple[CheckResult, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "by": self.by,
            "step": self.step,
            "weight": self.weight,
            "failures": self.failures,
            "line": self.line,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        try:
            by = data["by"]
            if by not in ("analysis", "operator"):
                raise ValueError(f"{by!r} is neither analysis nor operator")
            return cls(
                action=Action(data["action"]),
                by=by,
                step=int(data["step"]),
                weight=float(data["weight"]),
                failures=int(data["failures"]),
                line=str(data["line"]),
                results=tuple(CheckResult.from_dict(r) for r in data.get("results", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a canary decision: {exc!r}") from exc


@dataclass(frozen=True)
class State:
    """Where an analysis stands: its plan, the step it is at, failed evaluations so far, its
    status and every decision so far."""

    plan: Plan
    step: int = 0
    failures: int = 0
    status: Status = Status.RUNNING
    history: tuple[Decision, ...] = ()

    def __post_init__(self) -> None:
        last = len(self.plan.steps) - 1
        if not 0 <= self.step <= last:
            raise InvalidInput(f"canary state: step {self.step} is not one of the plan's")
        if not 0 <= self.failures <= self.plan.failure_limit:
            raise InvalidInput(f"canary state: {self.failures} failures is out of range")
        active = self.status in (Status.RUNNING, Status.PAUSED)
        if active and self.step == last:
            raise InvalidInput("canary state: at 100 % an analysis is promoted, not active")
        if active and self.failures >= self.plan.failure_limit:
            raise InvalidInput("canary state: at the failure limit an analysis is aborted")
        if self.status == Status.PROMOTED and self.step != last:
            raise InvalidInput("canary state: a promoted canary is at the last step")

    @property
    def weight(self) -> float:
        """The canary's share of traffic, in percent, that the router should hold."""
        if self.status == Status.ABORTED:
            return 0
        if self.status == Status.PROMOTED:
            return 100
        return self.plan.steps[self.step]

    @property
    def finished(self) -> bool:
        """Aborted or promoted: nothing more to decide."""
        return self.status in (Status.ABORTED, Status.PROMOTED)

    @property
    def last(self) -> Decision | None:
        """The latest decision, if any."""
        return self.history[-1] if self.history else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "plan": self.plan.to_dict(),
            "step": self.step,
            "weight": self.weight,  # derived; written for readers, checked when read back
            "failures": self.failures,
            "status": self.status.value,
            "history": [d.to_dict() for d in self.history],
        }

    def to_json(self) -> str:
        """The state as JSON (standard: no NaN), to persist and reattach to."""
        return json.dumps(self.to_dict(), allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        """Read back ``to_dict``'s output; InvalidInput when it is not a valid state."""
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
            state = cls(
                plan=Plan.from_dict(data["plan"]),
                step=int(data["step"]),
                failures=int(data["failures"]),
                status=Status(data["status"]),
                history=tuple(Decision.from_dict(d) for d in data["history"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"not a canary state: {exc!r}") from exc
        if "weight" in data and data["weight"] != state.weight:
            raise InvalidInput(
                f"not a canary state: weight {data['weight']!r} contradicts {state.weight:g}"
            )
        return state

    @classmethod
    def from_json(cls, text: str) -> State:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"not a canary state: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("not a canary state: not a JSON object")
        return cls.from_dict(data)


def start(plan: Plan) -> State:
    """A new analysis at the plan's first weight, running."""
    return State(plan=plan)


def _in_plan_order(plan: Plan, results: Sequence[CheckResult]) -> tuple[CheckResult, ...]:
    by_check: dict[Check, CheckResult] = {}
    for r in results:
        if r.check in by_check:
            raise InvalidInput(f"evaluation: {r.check.expression} was evaluated twice")
        by_check[r.check] = r
    missing = [c.expression for c in plan.checks if c not in by_check]
    extra = [c.expression for c in by_check if c not in plan.checks]
    if missing or extra:
        raise InvalidInput(
            "evaluation does not match the plan's checks:"
            + (f" missing {', '.join(missing)}" if missing else "")
            + (f" not in the plan {', '.join(extra)}" if extra else "")
        )
    return tuple(by_check[c] for c in plan.checks)


def _refuse_unless(state: State, *allowed: Status, doing: str) -> None:
    if state.status in allowed:
        return
    if state.status == Status.PAUSED:
        hint = "it is paused: resume, abort or promote it"
    elif state.status == Status.RUNNING:
        hint = "it is running, not paused"
    else:
        hint = f"it is already {state.status.value}"
    raise Conflict(f"cannot {doing} the canary: {hint}", title="Canary analysis")


def _record(
    state: State,
    action: Action,
    by: By,
    line: str,
    results: tuple[CheckResult, ...] = (),
    **new: Any,
) -> tuple[State, Decision]:
    after = replace(state, **new)
    decision = Decision(action, by, after.step, after.weight, after.failures, line, results)
    return replace(after, history=(*state.history, decision)), decision


def decide(state: State, results: Sequence[CheckResult]) -> tuple[State, Decision]:
    """The decision after one evaluation of every check of the plan (in any order)."""
    _refuse_unless(state, Status.RUNNING, doing="evaluate")
    plan = state.plan
    ordered = _in_plan_order(plan, results)
    summary = ", ".join(r.line for r in ordered)
    verdicts = {r.verdict for r in ordered}
    weight, total = _pct(state.weight), len(plan.steps)
    if Verdict.FAIL in verdicts:
        failures, limit = state.failures + 1, plan.failure_limit
        if failures >= limit:
            line = f"aborted after {failures}/{limit} failed evaluations at {weight} → 0 %"
            return _record(
                state,
                Action.ABORT,
                "analysis",
                f"{line}: {summary}",
                ordered,
                failures=failures,
                status=Status.ABORTED,
            )
        line = f"failed evaluation {failures}/{limit}, staying at {weight}: {summary}"
        return _record(state, Action.FAIL_COUNT, "analysis", line, ordered, failures=failures)
    if Verdict.INCONCLUSIVE in verdicts:
        line = f"paused at {weight}, inconclusive: {summary}"
        return _record(state, Action.PAUSE, "analysis", line, ordered, status=Status.PAUSED)
    following = state.step + 1
    if following == total - 1:
        line = f"step {total}/{total} → 100 %, promoted: {summary}"
        return _record(
            state,
            Action.PROMOTE,
            "analysis",
            line,
            ordered,
            step=following,
            status=Status.PROMOTED,
        )
    line = f"step {following + 1}/{total} → {_pct(plan.steps[following])}: {summary}"
    return _record(state, Action.STEP_UP, "analysis", line, ordered, step=following)


def _noted(line: str, note: str) -> str:
    return f"{line}: {note.strip()}" if note.strip() else line


def resume(state: State, note: str = "") -> tuple[State, Decision]:
    """A person resumes a paused analysis: it stays at its weight and evaluates again after
    the next interval. Conflict unless paused."""
    _refuse_unless(state, Status.PAUSED, doing="resume")
    line = _noted(f"resumed by the operator at {_pct(state.weight)}", note)
    return _record(state, Action.RESUME, "operator", line, status=Status.RUNNING)


def abort(state: State, note: str = "") -> tuple[State, Decision]:
    """A person aborts a running or paused analysis: all traffic back to stable."""
    _refuse_unless(state, Status.RUNNING, Status.PAUSED, doing="abort")
    line = _noted(f"aborted by the operator at {_pct(state.weight)} → 0 %", note)
    return _record(state, Action.ABORT, "operator", line, status=Status.ABORTED)


def promote(state: State, note: str = "") -> tuple[State, Decision]:
    """A person promotes a running or paused canary without further analysis."""
    _refuse_unless(state, Status.RUNNING, Status.PAUSED, doing="promote")
    line = _noted(f"promoted by the operator at {_pct(state.weight)} → 100 %", note)
    last = len(state.plan.steps) - 1
    return _record(state, Action.PROMOTE, "operator", line, step=last, status=Status.PROMOTED)


def pause_for(state: State, reason: str) -> tuple[State, Decision]:
    """The analysis pauses a running canary for a person, for ``reason`` (e.g. the promotion
    gate refused the version): it keeps its weight until someone decides."""
    _refuse_unless(state, Status.RUNNING, doing="pause")
    line = f"paused at {_pct(state.weight)}: {reason}"
    return _record(state, Action.PAUSE, "analysis", line, status=Status.PAUSED)


def abort_for(state: State, reason: str) -> tuple[State, Decision]:
    """The analysis aborts a running or paused canary for ``reason`` (e.g. its container
    exited): all traffic back to stable."""
    _refuse_unless(state, Status.RUNNING, Status.PAUSED, doing="abort")
    line = f"aborted at {_pct(state.weight)} → 0 %: {reason}"
    return _record(state, Action.ABORT, "analysis", line, status=Status.ABORTED)
