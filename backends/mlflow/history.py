"""The alias history's format and rules: tags in, events out. No I/O here.

Tag format (on the registered model): ``mlops.history.<alias>.<seq>.<token>`` holds one event as
JSON; ``mlops.claim.<alias>.<token>`` is a short-lived claim taken while a move is committed.
The protocol that writes them is described in ``backends.mlflow.registry``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from backends.errors import InvalidInput
from backends.identity import current_user
from backends.mlflow.history_tags import (
    CLAIM_PREFIX,
    CLAIM_TTL,
    DEPLOY_STREAM,
    HISTORY_PREFIX,
    PAST,
    Claim,
    Unreadable,
    decode_claim,
    decode_event,
    encode_claim,
    encode_event,
)
from backends.records import AliasEvent, AliasState, UnreadableEntry

__all__ = [
    "CLAIM_TTL",
    "DEPLOY_STREAM",
    "MANUAL_MOVE",
    "Claim",
    "Ledger",
    "check_alias",
    "current_user",
    "encode_claim",
    "encode_event",
    "history_of",
    "new_token",
    "rollback_target",
    "stale_message",
    "utc_now",
]

_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def check_alias(alias: str) -> str:
    """The alias, if MLflow and our tag keys accept it; InvalidInput otherwise."""
    if not _ALIAS.match(alias) or alias.lower() == "latest" or re.match(r"^[vV]\d+$", alias):
        raise InvalidInput(
            f"invalid alias {alias!r}: use letters, digits, '_' or '-' (not 'latest' or 'v<N>')"
        )
    return alias


@dataclass(frozen=True)
class Ledger:
    """One read of a registered model: its aliases, alias history, live claims and user tags."""

    model: str
    aliases: dict[str, int]
    events: tuple[AliasEvent, ...]  # ordered by (alias, seq, time, id); pending ones reconciled
    claims: tuple[Claim, ...]
    user_tags: dict[str, str]
    unreadable: tuple[UnreadableEntry, ...] = ()
    last_seq: dict[str, int] = field(default_factory=dict)  # per stream, even of abandoned ones

    @classmethod
    def parse(cls, model: str, aliases: dict[str, Any], tags: dict[str, str]) -> Ledger:
        events: list[AliasEvent] = []
        claims: list[Claim] = []
        unreadable: list[UnreadableEntry] = []
        user_tags: dict[str, str] = {}
        for key, value in tags.items():
            if key.startswith(HISTORY_PREFIX):
                event = decode_event(model, key, value)
                if isinstance(event, Unreadable):
                    unreadable.append(UnreadableEntry(event.key, event.why))
                elif event is not None:
                    events.append(event)
            elif key.startswith(CLAIM_PREFIX):
                claim = decode_claim(key, value)
                if isinstance(claim, Unreadable):
                    unreadable.append(UnreadableEntry(claim.key, claim.why))
                elif claim is not None:
                    claims.append(claim)
            else:
                user_tags[key] = value
        versions = {alias: int(version) for alias, version in aliases.items()}
        events.sort(key=lambda e: (e.alias, e.seq, e.at, e.id))
        last_seq: dict[str, int] = {}
        for e in events:
            last_seq[e.alias] = max(last_seq.get(e.alias, 0), e.seq)
        return cls(
            model,
            versions,
            tuple(_reconciled(events, versions)),
            tuple(claims),
            user_tags,
            tuple(sorted(unreadable, key=lambda u: u.key)),
            last_seq,
        )

    def events_of(self, alias: str) -> list[AliasEvent]:
        return [e for e in self.events if e.alias == alias]

    def last_event(self, alias: str) -> AliasEvent | None:
        events = self.events_of(alias)
        return events[-1] if events else None

    def live_claims(self, alias: str, now: float, *, besides: str = "") -> list[Claim]:
        """Claims on ``alias`` within their lifetime (a forged future date is not)."""
        return [c for c in self.claims if c.alias == alias and c.key != besides and c.live(now)]

    def dead_claims(self, alias: str, now: float) -> list[Claim]:
        """Claims on ``alias`` past their lifetime or dated in the future: to be removed."""
        return [c for c in self.claims if c.alias == alias and not c.live(now)]

    def next_seq(self, alias: str) -> int:
        """The sequence number the next event of ``alias`` takes (after every one written)."""
        return self.last_seq.get(alias, 0) + 1

    def state(self, alias: str) -> AliasState:
        last = self.last_event(alias)
        return AliasState(self.model, alias, self.aliases.get(alias), last.id if last else None)

    def manual_move(
        self, alias: str, now: datetime, *, noticed_by: str = "", own_claim: str = ""
    ) -> AliasEvent | None:
        """The move made outside mlops, if the alias is not where its newest event left it."""
        if alias.startswith(DEPLOY_STREAM):
            return None  # a deployment's stream follows containers, not a registry alias
        last = self.last_event(alias)
        current = self.aliases.get(alias)
        expected = last.to_version if last else None
        if current == expected or self.live_claims(alias, now.timestamp(), besides=own_claim):
            return None  # consistent, or another operator's move is in flight right now
        seq = self.next_seq(alias)
        note = f"moved outside mlops; noticed by {noticed_by}" if noticed_by else ""
        return AliasEvent(
            id=f"{seq:08d}.detected",
            model=self.model,
            alias=alias,
            seq=seq,
            action="manual",
            from_version=expected,
            to_version=current,
            who="unknown",
            at=now,
            reason=note or "moved outside mlops (detected now; MLflow records no time or user)",
            recorded=False,
        )


def _reconciled(events: list[AliasEvent], aliases: dict[str, int]) -> list[AliasEvent]:
    """Pending events as what happened: the newest of an alias is confirmed when the alias
    stands where it says, and dropped when it does not (its writer stopped before the move);
    an older one was followed by more moves, so it happened."""
    out: list[AliasEvent] = []
    for i, e in enumerate(events):
        newest = i + 1 == len(events) or events[i + 1].alias != e.alias
        stream = e.alias.startswith(DEPLOY_STREAM)
        if e.pending and newest and not stream and aliases.get(e.alias) != e.to_version:
            continue
        out.append(replace(e, pending=False) if e.pending else e)
    return out


def history_of(
    ledger: Ledger, alias: str | None = None, now: datetime | None = None
) -> list[AliasEvent]:
    """Every recorded move (of ``alias``, or of every alias) plus any manual move detected now."""
    now = now or utc_now()
    aliases = [alias] if alias else sorted({e.alias for e in ledger.events} | set(ledger.aliases))
    events = [e for a in aliases for e in ledger.events_of(a)]
    events += [m for a in aliases if (m := ledger.manual_move(a, now)) is not None]
    # One stream: by sequence, then time (a forged or skewed timestamp cannot reorder it).
    # Every stream together: a log by time, as an operator reads it.
    if alias:
        return sorted(events, key=lambda e: (e.seq, e.at))
    return sorted(events, key=lambda e: (e.at, e.alias, e.seq))


def rollback_target(events: Sequence[AliasEvent], current: int | None) -> int | None:
    """The version the alias held before the current one, replaying the history as a stack."""
    stack: list[int | None] = []
    for event in sorted(events, key=lambda e: (e.seq, e.id)):
        if event.action == "rollback" and event.to_version in stack:
            del stack[len(stack) - 1 - stack[::-1].index(event.to_version) :]
        else:  # promote, manual, or a rollback to a version that never held the alias
            stack.append(event.from_version)
    while stack and stack[-1] in (None, current):
        stack.pop()
    return stack[-1] if stack else None


MANUAL_MOVE = "moved outside mlops (manual)"  # how stale_message names a move nobody claimed


def stale_message(seen: AliasState, ledger: Ledger, *, own_claim: str = "") -> str | None:
    """Why the caller's view of the alias is stale (who moved it), or None if it is current."""
    now = ledger.state(seen.alias)
    if (now.version, now.last_event_id) == (seen.version, seen.last_event_id):
        return None
    head = f"{seen.alias} of {seen.model} moved since you read it (at version {_v(seen.version)})"
    seen_seq = int(seen.last_event_id.split(".")[0]) if seen.last_event_id else 0
    newer = [e for e in ledger.events_of(seen.alias) if e.seq > seen_seq]
    if (
        now.version == seen.version
        and newer
        and all(e.action == "manual" for e in newer)
        and newer[-1].to_version == seen.version
    ):
        # Only the write-down of an outside move the caller already saw the result of (the
        # registry's webhook records it): the view is right about where the alias stands.
        return None
    if newer and newer[-1].to_version == now.version:
        last = newer[-1]
        when = last.at.strftime("%Y-%m-%d %H:%M:%S %Z")
        return f"{head}: {last.who} {PAST[last.action]} version {_v(last.to_version)} at {when}"
    # The holder sets the alias before it writes the event: a live claim names the mover.
    movers = ledger.live_claims(seen.alias, time.time(), besides=own_claim)
    if movers:
        mover = next((c for c in movers if c.to_version == now.version), movers[0])
        return f"{head}: {mover.who} is moving it to version {_v(mover.to_version)} right now"
    return f"{head}: {MANUAL_MOVE} to version {_v(now.version)}"


def _v(version: int | None) -> str:
    return "-" if version is None else str(version)


def new_token() -> str:
    """A short random token that makes a tag key unique."""
    return uuid.uuid4().hex[:8]
