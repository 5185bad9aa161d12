"""The ``--check`` expressions of a canary release and the verdict of each at one evaluation.

A check is ``METRIC OP RHS`` (spaces allowed): ``error_ratio<0.01``, ``p99 < 250ms``,
``accuracy>=stable-0.02``. The right-hand side is a number (seconds for latency, with an
optional ``ms``/``s`` suffix; a fraction for ratios, with an optional ``%``), or the stable
version's own figure at the same evaluation: ``stable``, ``stable+X``, ``stable-X``,
``stable*X``. A check whose figure is missing (no traffic, no labels yet, source down) is
inconclusive, never passed or failed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, get_args

from backends.errors import InvalidInput

__all__ = [
    "METRICS",
    "Check",
    "CheckResult",
    "Metric",
    "Operator",
    "Relative",
    "Verdict",
    "evaluate",
    "parse_check",
    "parse_checks",
]

Metric = Literal[
    "error_ratio", "request_rate", "p50", "p95", "p99", "accuracy", "f1_macro", "mae", "rmse"
]
Operator = Literal["<", "<=", ">", ">="]
Relative = Literal["stable", "stable+", "stable-", "stable*"]

METRICS: tuple[Metric, ...] = get_args(Metric)
LATENCIES = frozenset({"p50", "p95", "p99"})  # seconds
FRACTIONS = frozenset({"error_ratio", "accuracy", "f1_macro"})  # between 0 and 1
_UNITS = {"p50": " s", "p95": " s", "p99": " s", "request_rate": "/s"}
_SHOWN_OPS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}
_SHOWN_ADJUST = {"+": "+", "-": "-", "*": "*"}

_METRIC = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_OPERATOR = re.compile(r"(<=|>=|<|>|==|!=|=<|=>|=)\s*")
_NUMBER = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(ms|s|%)?\s*\Z")
_STABLE = re.compile(r"stable\s*(?:([+\-*])\s*(.*))?\Z", re.IGNORECASE)


class Verdict(StrEnum):
    """One check at one evaluation."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"  # a figure it needs is missing: no traffic, no labels, no source

    @property
    def mark(self) -> str:
        return {"pass": "✓", "fail": "✗", "inconclusive": "?"}[self.value]


def _present(value: float | None) -> float | None:
    """The value, or None for a missing one (None or NaN)."""
    return None if value is None or math.isnan(value) else value


def _number(value: float) -> str:
    """A number as written in a canonical expression: exact, without a needless ``.0``."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@dataclass(frozen=True)
class Check:
    """``metric op threshold``, where the threshold is ``amount`` itself (``relative`` None) or
    the stable version's figure: as is, plus, minus or times ``amount``. Base units: seconds."""

    metric: Metric
    op: Operator
    amount: float
    relative: Relative | None = None

    @property
    def expression(self) -> str:
        """The canonical text, which ``parse_check`` reads back to this check."""
        if self.relative is None:
            rhs = _number(self.amount)
        elif self.relative == "stable":
            rhs = "stable"
        else:
            rhs = f"{self.relative}{_number(self.amount)}"
        return f"{self.metric}{self.op}{rhs}"

    def describe(self) -> str:
        """For display: ``p99 < 0.25 s``, ``accuracy ≥ stable - 0.02``."""
        unit = _UNITS.get(self.metric, "")
        op = _SHOWN_OPS[self.op]
        if self.relative is None:
            return f"{self.metric} {op} {self.amount:g}{unit}"
        if self.relative == "stable":
            return f"{self.metric} {op} stable"
        adjust = _SHOWN_ADJUST[self.relative[-1]]
        amount = f"{self.amount:g}" if self.relative == "stable*" else f"{self.amount:g}{unit}"
        return f"{self.metric} {op} stable {adjust} {amount}"

    @property
    def needs_stable(self) -> bool:
        """Whether the stable version's figure is part of the threshold."""
        return self.relative is not None

    def threshold(self, stable_value: float | None) -> float | None:
        """The bound at this evaluation; None when it needs a stable figure that is missing."""
        if self.relative is None:
            return self.amount
        stable = _present(stable_value)
        if stable is None:
            return None
        if self.relative == "stable+":
            return stable + self.amount
        if self.relative == "stable-":
            return stable - self.amount
        if self.relative == "stable*":
            return stable * self.amount
        return stable

    def judge(self, canary_value: float | None, stable_value: float | None = None) -> Verdict:
        """Pass or fail on the canary's figure; inconclusive when a figure it needs is missing."""
        canary = _present(canary_value)
        bound = self.threshold(stable_value)
        if canary is None or bound is None:
            return Verdict.INCONCLUSIVE
        holds = {
            "<": canary < bound,
            "<=": canary <= bound,
            ">": canary > bound,
            ">=": canary >= bound,
        }[self.op]
        return Verdict.PASS if holds else Verdict.FAIL

    def evaluate(self, canary_value: float | None, stable_value: float | None) -> CheckResult:
        """The verdict with the figures that decided it."""
        canary, stable = _present(canary_value), _present(stable_value)
        return CheckResult(
            check=self,
            verdict=self.judge(canary, stable),
            canary=canary,
            stable=stable if self.needs_stable else None,
            threshold=self.threshold(stable),
        )


@dataclass(frozen=True)
class CheckResult:
    """One check at one evaluation: its verdict, the canary's figure, the stable's (for a check
    relative to it) and the bound they made. None: the figure was missing."""

    check: Check
    verdict: Verdict
    canary: float | None
    stable: float | None
    threshold: float | None

    @property
    def line(self) -> str:
        """``p99 0.081 s < 0.25 s ✓``; ``accuracy 0.91 ≥ 0.93 (stable 0.95 - 0.02) ✗``."""
        c = self.check
        unit = _UNITS.get(c.metric, "")
        value = f"{_shown(self.canary)}{unit if self.canary is not None else ''}"
        bound = f"{_shown(self.threshold)}{unit if self.threshold is not None else ''}"
        text = f"{c.metric} {value} {_SHOWN_OPS[c.op]} {bound}"
        if c.relative == "stable":
            text += f" (stable {_shown(self.stable)})"
        elif c.relative is not None:
            adjust = _SHOWN_ADJUST[c.relative[-1]]
            text += f" (stable {_shown(self.stable)} {adjust} {c.amount:g})"
        return f"{text} {self.verdict.mark}"

    def to_dict(self) -> dict[str, object]:
        """Plain JSON values (None for a missing figure)."""
        return {
            "check": self.check.expression,
            "verdict": self.verdict.value,
            "canary": self.canary,
            "stable": self.stable,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CheckResult:
        """Read back ``to_dict``'s output; InvalidInput when it is not one."""
        try:
            check = parse_check(str(data["check"]))
            verdict = Verdict(str(data["verdict"]))
            figures = [_optional_float(data.get(k)) for k in ("canary", "stable", "threshold")]
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInput(f"not a check result: {exc}") from exc
        return cls(check, verdict, *figures)


def _optional_float(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _refuse(text: str, problem: str) -> InvalidInput:
    return InvalidInput(f"check {text.strip()!r}: {problem}", title="Invalid check")


def _amount(text: str, metric: Metric, number: str, *, factor: bool = False) -> float:
    """A right-hand side number in the metric's base unit."""
    found = _NUMBER.match(number)
    if not found:
        shown = number.strip()
        if not shown:
            raise _refuse(text, "nothing after the operator: expected a number or stable")
        if shown.startswith(("-", "+")):
            raise _refuse(text, f"{shown!r}: expected a number without a sign")
        raise _refuse(
            text,
            f"{shown!r} is not a number"
            + ("" if factor else ", nor stable, stable+X, stable-X or stable*X"),
        )
    value, unit = float(found.group(1)), found.group(2)
    if not math.isfinite(value):
        raise _refuse(text, f"{found.group(1)!r} is not a finite number")
    if unit and factor:
        raise _refuse(text, f"a factor of stable takes no unit ({unit!r})")
    if unit in ("ms", "s") and metric not in LATENCIES:
        raise _refuse(text, f"{unit!r} is a unit of latency, and {metric} is not a latency")
    if unit == "%" and metric not in FRACTIONS:
        raise _refuse(text, f"'%' is for a fraction, and {metric} is not one")
    if unit == "ms":
        value /= 1000
    elif unit == "%":
        value /= 100
    return value


def parse_check(text: str) -> Check:
    """``METRIC OP RHS`` as ``--check`` takes it; InvalidInput naming the problem otherwise."""
    found = _METRIC.match(text)
    if not found or not text.strip():
        raise _refuse(text, f"expected METRIC OP VALUE, e.g. p99<0.25 (metrics: {_known()})")
    name = found.group(1)
    if name not in METRICS:
        raise _refuse(text, f"unknown metric {name!r} (known: {_known()})")
    metric: Metric = name  # narrowed by the membership test above
    rest = text[found.end() :]
    op_found = _OPERATOR.match(rest)
    if not op_found:
        raise _refuse(text, f"expected <, <=, > or >= after {metric}")
    op = op_found.group(1)
    if op not in get_args(Operator):
        raise _refuse(text, f"{op!r} is not an operator here: use <, <=, > or >=")
    operator: Operator = op  # type: ignore[assignment]  # checked just above
    rhs = rest[op_found.end() :].strip()
    stable = _STABLE.match(rhs)
    if not stable:
        value = _amount(text, metric, rhs)
        if metric in FRACTIONS and value > 1:
            raise _refuse(
                text,
                f"{metric} is a fraction between 0 and 1, so {value:g} cannot bound it"
                f" (for {value:g} %, write {value / 100:g} or {value:g}%)",
            )
        return Check(metric, operator, value)
    adjust, amount = stable.group(1), stable.group(2)
    if adjust is None:
        return Check(metric, operator, 0.0, "stable")
    if not amount.strip():
        raise _refuse(text, f"expected a number after stable{adjust}")
    value = _amount(text, metric, amount, factor=adjust == "*")
    if adjust == "*" and value == 0:
        raise _refuse(text, "a factor of 0 makes stable*0 a fixed 0: write the number instead")
    relative: Relative = f"stable{adjust}"  # type: ignore[assignment]  # one of +, -, *
    return Check(metric, operator, value, relative)


def parse_checks(texts: Iterable[str]) -> tuple[Check, ...]:
    """Every ``--check``, in order; InvalidInput for a bad one or one given twice."""
    checks: list[Check] = []
    for text in texts:
        check = parse_check(text)
        if check in checks:
            raise _refuse(text, f"given twice (as {check.expression})")
        checks.append(check)
    return tuple(checks)


def evaluate(
    checks: Sequence[Check],
    canary: Mapping[str, float | None],
    stable: Mapping[str, float | None],
) -> tuple[CheckResult, ...]:
    """Every check on the two versions' figures (by metric name; missing means no figure)."""
    return tuple(c.evaluate(canary.get(c.metric), stable.get(c.metric)) for c in checks)


def _known() -> str:
    return ", ".join(METRICS)
