"""Records of the model registry: models, versions, aliases, their history, the gate, and
the plans of the moves an operator confirms."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from backends.records.policy import PolicyReport

AliasAction = Literal["promote", "rollback", "manual", "deploy", "approve", "canary"]


@dataclass(frozen=True)
class RegisteredModel:
    """A registered model; ``aliases`` maps alias → version, ``tags`` omits mlops bookkeeping."""

    name: str
    description: str
    aliases: dict[str, int]
    tags: dict[str, str]
    latest_version: int | None
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model, with its source run's metrics."""

    name: str
    version: int
    run_id: str | None
    metrics: dict[str, float]
    aliases: tuple[str, ...]
    tags: dict[str, str]
    created: datetime
    status: str
    stage: str | None  # legacy MLflow stage (deprecated): shown when set, never relied on
    source: str
    # Which tracking store the version lives in (a fingerprint of its URI): two stores can
    # both have an "iris v2", and only the store and the run tell them apart.
    store: str = ""

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return f"models:/{self.name}/{self.version}"

    @property
    def label(self) -> str:
        """``NAME vVERSION`` for messages."""
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class Provenance:
    """Where a version's code came from, as its source run recorded it (MLflow's
    ``mlflow.source.*`` tags); None where the run did not record it (not run from git)."""

    repo_url: str | None
    commit: str | None
    source: str | None  # the project or script that ran


@dataclass(frozen=True)
class AliasState:
    """What an operator saw of an alias: its version and the newest history event behind it."""

    model: str
    alias: str
    version: int | None
    last_event_id: str | None


@dataclass(frozen=True)
class AliasEvent:
    """One move of an alias. ``recorded`` is False for a manual move detected but not yet saved."""

    id: str
    model: str
    alias: str
    seq: int
    action: AliasAction
    from_version: int | None
    to_version: int | None
    who: str
    at: datetime
    reason: str
    recorded: bool = True
    pending: bool = False  # written before the alias moved; confirmed once it has


@dataclass(frozen=True)
class UnreadableEntry:
    """A tag under the history's prefix that is not a valid entry (forged, hand-edited, cut
    off), and why: reported, never trusted, never a crash."""

    key: str
    why: str


@dataclass(frozen=True)
class AliasHistory:
    """Every readable move of a model's aliases, oldest first, and what could not be read."""

    model: str
    events: tuple[AliasEvent, ...]
    unreadable: tuple[UnreadableEntry, ...]


@dataclass(frozen=True)
class GateCheck:
    """One check of a promotion gate and what it found."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    """The promotion gate for one version against the version that holds ``alias`` now."""

    model: str
    version: int
    alias: str
    checks: tuple[GateCheck, ...]
    passed: bool
    policy: PolicyReport | None = None  # the model's gate.yaml judged on held-out data


@dataclass(frozen=True)
class PromotePlan:
    """A promotion as the operator is shown it: ``alias`` of ``model`` from where it was seen
    (``seen``) to ``version``. Applying it refuses (Conflict) if the alias moved since."""

    model: str
    version: int
    alias: str
    seen: AliasState
    requirements: tuple[str, ...] = ()

    @property
    def from_version(self) -> int | None:
        return self.seen.version

    @property
    def moves(self) -> bool:
        """False when the alias already points at ``version`` (applying moves nothing)."""
        return self.seen.version != self.version


@dataclass(frozen=True)
class AliasRollbackPlan:
    """An alias rollback as shown: ``alias`` back from ``seen.version`` to ``to_version`` (the
    version it held before, from the history, or the one asked for)."""

    model: str
    alias: str
    seen: AliasState
    to_version: int

    @property
    def from_version(self) -> int | None:
        return self.seen.version

    @property
    def moves(self) -> bool:
        return self.seen.version != self.to_version


@dataclass(frozen=True)
class RetrainTrigger:
    """What started a retraining: an alert (name, labels, since when) or a person's command."""

    source: str  # "alertmanager", "cli", "console"
    alert: str = ""  # the alert's name, when an alert started it
    labels: dict[str, str] = field(default_factory=dict)
    starts_at: str = ""  # the alert's startsAt, as Alertmanager sent it
    by: str = ""  # who ran it, or which hooks server took the alert

    def summary(self) -> str:
        if not self.alert:
            return f"started by {self.by or 'someone'} ({self.source})"
        shown = " ".join(
            f"{k}={v}" for k, v in sorted(self.labels.items()) if k not in ("alertname",)
        )
        since = f" since {self.starts_at}" if self.starts_at else ""
        return f"alert {self.alert} ({shown}){since}, via {self.source}"


@dataclass(frozen=True)
class GateReport:
    """What the retraining's gate found for a challenger, kept on its version for the person
    who approves it: the comparison with the champion and every check of the registry's gate."""

    comparison: str
    checks: tuple[GateCheck, ...]
    passed: bool
    champion_version: int | None
    at: str  # ISO time

    def lines(self) -> list[str]:
        out = [self.comparison]
        out += [f"{'pass' if c.passed else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        return out


@dataclass(frozen=True)
class PendingApproval:
    """A challenger that passed its gate and waits for a person to make it champion."""

    model: str
    version: int
    champion_version: int | None
    created: datetime
    run_id: str | None
    report: GateReport | None  # None: moved to challenger by hand, never gated by a retrain
    trigger: RetrainTrigger | None

    @property
    def label(self) -> str:
        return f"{self.model} v{self.version}"


@dataclass(frozen=True)
class ApprovePlan:
    """An approval as the approver is shown it: champion of ``model`` from ``seen`` to the
    challenger ``version``, which must still be the challenger when it is applied."""

    model: str
    version: int
    seen: AliasState  # champion as it was when the plan was read
    challenger: AliasState  # the challenger alias as it was (at ``version``)
    pending: PendingApproval

    @property
    def from_version(self) -> int | None:
        return self.seen.version


def version_number(value: object) -> int | None:
    """A version number from a label, tag or form field ("3", 3, "v3"); None if it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    text = str(value or "").strip().removeprefix("v")
    return int(text) if text.isdigit() and int(text) > 0 else None
