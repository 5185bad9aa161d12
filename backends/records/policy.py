"""Records of a gate policy's evaluation: every check with its figures, the worst slices, and
the data it was judged on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["pass", "fail", "undecided"]
CheckKind = Literal["floor", "champion", "slice", "fairness"]


@dataclass(frozen=True)
class PolicyCheck:
    """One check of a gate policy: ``value`` with its bootstrap interval [``low``, ``high``]
    against ``threshold``. ``undecided``: the interval holds the threshold, so the evaluation
    set is too small to tell (the policy's ``undecided`` setting says what that means)."""

    name: str
    kind: CheckKind
    metric: str
    value: float | None  # None: nothing to measure (say, a single group)
    threshold: float
    low: float | None
    high: float | None
    verdict: Verdict
    rows: int
    detail: str = ""


@dataclass(frozen=True)
class SliceFigure:
    """A slice's size and value of the metric it is ranked by."""

    slice: str
    rows: int
    metric: str
    value: float | None  # None: no figure (a group without rows), never ranked among the worst


@dataclass(frozen=True)
class PolicyReport:
    """A candidate judged by its ``gate.yaml`` on held-out data (``dataset``, ``digest``)."""

    policy: str  # where the policy came from
    dataset: str  # which data it was judged on
    digest: str
    rows: int
    resamples: int
    confidence: float
    champion_version: int | None
    checks: tuple[PolicyCheck, ...]
    worst_slices: tuple[SliceFigure, ...]
    unjudged: tuple[SliceFigure, ...]  # slices below the minimum size: reported, not judged
    undecided_passes: bool
    passed: bool

    def counts(self) -> dict[str, int]:
        found = {"pass": 0, "fail": 0, "undecided": 0}
        for check in self.checks:
            found[check.verdict] += 1
        return found
