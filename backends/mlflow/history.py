"""The alias history's format and rules: tags in, events out. No I/O here.

Tag format (on the registered model): ``mlops.history.<alias>.<seq>.<token>`` holds one event as
JSON; ``mlops.claim.<alias>.<token>`` is a short-lived claim taken while a move is committed.
The protocol that writes them is described in ``backends.mlflow.registry``.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backends.errors import InvalidInput
from backends.records import AliasEvent, AliasState

__all__ = [
    "CLAIM_TTL",
    "DEPLOY_STREAM",
    "Claim",
    "Ledger",
    "check_alias",
    "current_user",
    "decode_claim",
    "decode_event",
    "encode_claim",
    "encode_event",
    "history_of",
    "new_token",
    "rollback_target",
    "stale_message",
    "utc_now",
]

HISTORY_PREFIX = "mlops.history."
CLAIM_PREFIX = "mlops.claim."
CLAIM_TTL = 30.0  # seconds a claim stays live; a commit takes milliseconds
MAX_REASON = 2000
# A stream is an alias, or ``deploy/<deployment>`` for container deploys and rollbacks (a
# slash cannot appear in an alias, so the two never collide).
_EVENT_KEY = re.compile(
    r"^mlops\.history\.(?P<alias>[\w\-]+|deploy/[\w\-]+)\.(?P<seq>\d{8})\.(?P<token>\w+)$"
)
DEPLOY_STREAM = "deploy/"
_CLAIM_KEY = re.compile(r"^mlops\.claim\.(?P<alias>[\w\-]+)\.(?P<token>\w+)$")
_ALIAS = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_PAST = {
    "promote": "promoted",
    "rollback": "rolled back to",
    "manual": "moved it to",
    "deploy": "deployed",
}


def current_user() -> str:
    """Who is acting: ``MLOPS_USER`` if set, else the OS user."""
    user = os.environ.get("MLOPS_USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no passwd entry (some containers)
        return "unknown"


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
class Claim:
    """Someone is moving ``alias`` to ``to_version`` right now (or crashed doing so)."""

    key: str
    alias: str
    who: str
    to_version: int | None
    at: float  # epoch seconds, the claimant's clock


def encode_event(event: AliasEvent) -> tuple[str, str]:
    """The registered-model tag (key, value) that stores one event."""
    value = {
        "v": 1,
        "action": event.action,
        "from": event.from_version,
        "to": event.to_version,
        "who": event.who,
        "at": event.at.isoformat(),
        "reason": event.reason[:MAX_REASON],
    }
    return f"{HISTORY_PREFIX}{event.alias}.{event.id}", json.dumps(value, sort_keys=True)


def decode_event(model: str, key: str, value: str) -> AliasEvent | None:
    """The event stored in one tag, or None when the tag is not a (well-formed) event."""
    match = _EVENT_KEY.match(key)
    if not match:
        return None
    try:
        data = json.loads(value)
        action = data["action"]
        if action not in _PAST:
            return None
        return AliasEvent(
            id=f"{match['seq']}.{match['token']}",
            model=model,
            alias=match["alias"],
            seq=int(match["seq"]),
            action=action,
            from_version=_opt_int(data.get("from")),
            to_version=_opt_int(data.get("to")),
            who=str(data.get("who") or "unknown"),
            at=datetime.fromisoformat(data["at"]),
            reason=str(data.get("reason") or ""),
        )
    except (ValueError, KeyError, TypeError):
        return None  # someone else's tag under our prefix: ignore it, never crash on it


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def encode_claim(alias: str, token: str, who: str, to_version: int | None) -> tuple[str, str]:
    value = json.dumps({"who": who, "to": to_version, "at": time.time()})
    return f"{CLAIM_PREFIX}{alias}.{token}", value


def decode_claim(key: str, value: str) -> Claim | None:
    match = _CLAIM_KEY.match(key)
    if not match:
        return None
    try:
        data = json.loads(value)
        return Claim(key, match["alias"], str(data["who"]), _opt_int(data["to"]), float(data["at"]))
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Ledger:
    """One read of a registered model: its aliases, alias history, live claims and user tags."""

    model: str
    aliases: dict[str, int]
    events: tuple[AliasEvent, ...]  # ordered by (alias, seq, id)
    claims: tuple[Claim, ...]
    user_tags: dict[str, str]

    @classmethod
    def parse(cls, model: str, aliases: dict[str, Any], tags: dict[str, str]) -> Ledger:
        events: list[AliasEvent] = []
        claims: list[Claim] = []
        user_tags: dict[str, str] = {}
        for key, value in tags.items():
            if key.startswith(HISTORY_PREFIX):
                if (event := decode_event(model, key, value)) is not None:
                    events.append(event)
            elif key.startswith(CLAIM_PREFIX):
                if (claim := decode_claim(key, value)) is not None:
                    claims.append(claim)
            else:
                user_tags[key] = value
        events.sort(key=lambda e: (e.alias, e.seq, e.id))
        versions = {alias: int(version) for alias, version in aliases.items()}
        return cls(model, versions, tuple(events), tuple(claims), user_tags)

    def events_of(self, alias: str) -> list[AliasEvent]:
        return [e for e in self.events if e.alias == alias]

    def last_event(self, alias: str) -> AliasEvent | None:
        events = self.events_of(alias)
        return events[-1] if events else None

    def live_claims(self, alias: str, now: float, *, besides: str = "") -> list[Claim]:
        return [
            c
            for c in self.claims
            if c.alias == alias and c.key != besides and now - c.at < CLAIM_TTL
        ]

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
        seq = (last.seq if last else 0) + 1
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


def history_of(
    ledger: Ledger, alias: str | None = None, now: datetime | None = None
) -> list[AliasEvent]:
    """Every recorded move (of ``alias``, or of every alias) plus any manual move detected now."""
    now = now or utc_now()
    aliases = [alias] if alias else sorted({e.alias for e in ledger.events} | set(ledger.aliases))
    events = [e for a in aliases for e in ledger.events_of(a)]
    events += [m for a in aliases if (m := ledger.manual_move(a, now)) is not None]
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


def stale_message(seen: AliasState, ledger: Ledger, *, own_claim: str = "") -> str | None:
    """Why the caller's view of the alias is stale (who moved it), or None if it is current."""
    now = ledger.state(seen.alias)
    if (now.version, now.last_event_id) == (seen.version, seen.last_event_id):
        return None
    head = f"{seen.alias} of {seen.model} moved since you read it (at version {_v(seen.version)})"
    seen_seq = int(seen.last_event_id.split(".")[0]) if seen.last_event_id else 0
    newer = [e for e in ledger.events_of(seen.alias) if e.seq > seen_seq]
    if newer and newer[-1].to_version == now.version:
        last = newer[-1]
        when = last.at.strftime("%Y-%m-%d %H:%M:%S %Z")
        return f"{head}: {last.who} {_PAST[last.action]} version {_v(last.to_version)} at {when}"
    # The holder sets the alias before it writes the event: a live claim names the mover.
    movers = ledger.live_claims(seen.alias, time.time(), besides=own_claim)
    if movers:
        mover = next((c for c in movers if c.to_version == now.version), movers[0])
        return f"{head}: {mover.who} is moving it to version {_v(mover.to_version)} right now"
    return f"{head}: moved outside mlops (manual) to version {_v(now.version)}"


def _v(version: int | None) -> str:
    return "-" if version is None else str(version)


def new_token() -> str:
    """A short random token that makes a tag key unique."""
    return uuid.uuid4().hex[:8]
