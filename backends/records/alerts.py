"""Records of alerting: Alertmanager's alert groups and silences, or Prometheus' own alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]
# Alertmanager's states of an alert: active (notified), suppressed (silenced or inhibited),
# unprocessed (just received). Prometheus' own alerts are "firing" or "pending" (waiting out
# their `for:`); the read-only fallback shows those.
ManagedState = Literal["active", "suppressed", "unprocessed", "firing", "pending"]
SilenceState = Literal["active", "pending", "expired"]


@dataclass(frozen=True)
class Matcher:
    """One label matcher of a silence, as Alertmanager reads it (regexes match the whole value)."""

    name: str
    value: str
    op: MatchOp = "="

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'

    @property
    def is_regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.op in ("=", "=~")


@dataclass(frozen=True)
class Silence:
    """A silence: alerts its matchers match are not notified from ``starts_at`` to ``ends_at``."""

    id: str
    matchers: tuple[Matcher, ...]
    created_by: str
    comment: str
    starts_at: datetime
    ends_at: datetime
    state: SilenceState

    @property
    def short_id(self) -> str:
        return self.id[:8]


@dataclass(frozen=True)
class ManagedAlert:
    """One alert as the alerting system holds it, with why it is quiet when it is."""

    name: str
    labels: dict[str, str]  # all of it, alertname and severity included
    annotations: dict[str, str]
    state: ManagedState
    starts_at: datetime | None
    fingerprint: str = ""
    silenced_by: tuple[str, ...] = ()  # silence ids
    inhibited_by: tuple[str, ...] = ()  # fingerprints of the alerts that inhibit it
    receivers: tuple[str, ...] = ()

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def summary(self) -> str:
        return self.annotations.get("summary", "")

    @property
    def runbook_url(self) -> str:
        return self.annotations.get("runbook_url", "")


@dataclass(frozen=True)
class AlertGroup:
    """Alerts notified together (Alertmanager's route ``group_by``), with the group's labels."""

    id: str  # short and stable: what `mlops alerts ack ID` takes
    labels: dict[str, str]
    receiver: str
    alerts: tuple[ManagedAlert, ...]

    @property
    def state(self) -> str:
        """active when any alert is notified; else silenced, inhibited, or the fallback's own."""
        states = {a.state for a in self.alerts}
        if "active" in states or "firing" in states:
            return "active" if "active" in states else "firing"
        if "pending" in states:
            return "pending"
        if self.alerts and all(a.silenced_by for a in self.alerts):
            return "silenced"
        if self.alerts and all(a.inhibited_by or a.silenced_by for a in self.alerts):
            return "inhibited"
        return "unprocessed" if "unprocessed" in states else "suppressed"

    @property
    def title(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items())) or "(all alerts)"


@dataclass(frozen=True)
class AlertsView:
    """What the alerting source holds now: groups and silences, and whether it can change."""

    source: str  # "alertmanager http://..." or "prometheus http://... (read-only)"
    read_only: bool  # Prometheus' own alerts: nothing to acknowledge or silence
    taken_at: datetime
    groups: tuple[AlertGroup, ...]
    silences: tuple[Silence, ...] = ()

    def silence(self, silence_id: str) -> Silence | None:
        return next((s for s in self.silences if s.id == silence_id), None)


@dataclass(frozen=True)
class SilencePlan:
    """A silence as it would be posted, with what it would quiet now: shown before applying."""

    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    matching: tuple[ManagedAlert, ...] = field(default=())  # the alerts it matches now
    acknowledges: str = ""  # the group id, when this is an acknowledgement

    @property
    def minutes(self) -> float:
        return (self.ends_at - self.starts_at).total_seconds() / 60


@dataclass(frozen=True)
class ExpirePlan:
    """A silence to expire, as read just before: shown before applying."""

    silence: Silence
    matching: tuple[ManagedAlert, ...] = ()  # the alerts it quiets now
