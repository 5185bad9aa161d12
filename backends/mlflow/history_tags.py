"""The alias history's tags: how an event and a claim are written, and how they are read back.

Anyone with edit rights on a registered model can write its tags, so reading trusts nothing:
a tag under our prefixes that does not parse (junk JSON, a time without a zone, an unknown
action, a value larger than the store holds) is not an event; it is reported as unreadable and
never crashes a reader or hides the valid events beside it.

* ``mlops.history.<stream>.<seq>.<token>`` → one event as JSON; ``seq`` is any number of digits
  (written zero-padded to 8), ``token`` makes every key unique.
* ``mlops.claim.<alias>.<token>`` → a short-lived claim taken while a move is committed.

Values are measured as the store measures them (characters of the JSON text: a PostgreSQL-backed
server stores at most 5,000), written with ``ensure_ascii=False`` so that a non-ASCII reason is
not six times longer, and ``reason``/``who`` are cut with a marker to fit.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from backends.records import AliasEvent

__all__ = [
    "CLAIM_PREFIX",
    "CLAIM_SKEW",
    "CLAIM_TTL",
    "DEPLOY_STREAM",
    "HISTORY_PREFIX",
    "MAX_VALUE",
    "PAST",
    "Claim",
    "Unreadable",
    "decode_claim",
    "decode_event",
    "encode_claim",
    "encode_event",
]

HISTORY_PREFIX = "mlops.history."
CLAIM_PREFIX = "mlops.claim."
DEPLOY_STREAM = "deploy/"
MAX_VALUE = 5000  # characters: what a PostgreSQL-backed MLflow stores in a model tag value
TRUNCATED = " …[truncated]"
# A claim lives longer than all its holder may still do once it took it: a few requests, each
# up to MLflow's request timeout (30 s) and one retry. Its holder stops before half of it.
CLAIM_TTL = 300.0
CLAIM_SKEW = 30.0  # seconds a claimant's clock may run ahead; a claim dated later is forged
PAST = {
    "promote": "promoted",
    "rollback": "rolled back to",
    "manual": "moved it to",
    "deploy": "deployed",
    "approve": "approved",
    "canary": "released as a canary",
}
_EVENT_KEY = re.compile(
    r"^mlops\.history\.(?P<alias>[\w\-]+|deploy/[\w\-]+)\.(?P<seq>\d+)\.(?P<token>\w+)$"
)
_CLAIM_KEY = re.compile(r"^mlops\.claim\.(?P<alias>[\w\-]+)\.(?P<token>\w+)$")


@dataclass(frozen=True)
class Unreadable:
    """A tag under our prefix that is not a valid entry, and why."""

    key: str
    why: str


@dataclass(frozen=True)
class Claim:
    """Someone is moving ``alias`` to ``to_version`` right now (or crashed doing so)."""

    key: str
    alias: str
    who: str
    to_version: int | None
    at: float  # epoch seconds, the claimant's clock

    def live(self, now: float) -> bool:
        """Within its lifetime, and not dated in the future beyond a clock's skew."""
        return now - CLAIM_TTL < self.at <= now + CLAIM_SKEW


def _fit(value: dict[str, Any]) -> str:
    """The JSON text of ``value``, with ``reason`` then ``who`` cut to fit MAX_VALUE."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    for field in ("reason", "who"):
        over = len(text) - MAX_VALUE
        if over <= 0:
            return text
        original = str(value[field])
        keep = max(0, len(original) - over - len(TRUNCATED))
        value = {**value, field: original[:keep] + TRUNCATED}
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text


def encode_event(event: AliasEvent) -> tuple[str, str]:
    """The registered-model tag (key, value) that stores one event."""
    value = {
        "v": 2,
        "action": event.action,
        "from": event.from_version,
        "to": event.to_version,
        "who": event.who,
        "at": event.at.isoformat(),
        "reason": event.reason,
        "pending": False,  # cut to fit as confirmed ("false" is the longer), so that pending
    }  # and confirmed copies of one event read back the same
    fitted_value = json.loads(_fit(value))
    fitted_value["pending"] = event.pending
    text = json.dumps(fitted_value, sort_keys=True, ensure_ascii=False)
    return f"{HISTORY_PREFIX}{event.alias}.{event.id}", text


def fitted(event: AliasEvent) -> AliasEvent:
    """The event as it will read back once stored (``reason`` and ``who`` cut to fit)."""
    _, value = encode_event(event)
    data = json.loads(value)
    return replace(event, reason=data["reason"], who=data["who"])


def decode_event(model: str, key: str, value: str) -> AliasEvent | Unreadable | None:
    """The event one tag stores; Unreadable (and why) when it is under our prefix but is not
    a valid event; None when the key is not ours at all."""
    if not key.startswith(HISTORY_PREFIX):
        return None
    match = _EVENT_KEY.match(key)
    if not match:
        return Unreadable(key, "the key is not mlops.history.<alias>.<seq>.<token>")
    if len(value) > MAX_VALUE:
        return Unreadable(key, f"the value has {len(value)} characters (at most {MAX_VALUE})")
    try:
        data = json.loads(value)
    except ValueError:
        return Unreadable(key, "the value is not JSON")
    if not isinstance(data, dict):
        return Unreadable(key, "the value is not a JSON object")
    action = data.get("action")
    if action not in PAST:
        return Unreadable(key, f"unknown action {str(action)[:40]!r}")
    try:
        at = datetime.fromisoformat(str(data["at"]))
        from_version = _opt_int(data.get("from"))
        to_version = _opt_int(data.get("to"))
    except (KeyError, TypeError, ValueError):
        return Unreadable(key, "its time or versions do not parse")
    if at.tzinfo is None:
        return Unreadable(key, "its time has no time zone")
    return AliasEvent(
        id=f"{match['seq']}.{match['token']}",
        model=model,
        alias=match["alias"],
        seq=int(match["seq"]),
        action=action,
        from_version=from_version,
        to_version=to_version,
        who=str(data.get("who") or "unknown"),
        at=at,
        reason=str(data.get("reason") or ""),
        pending=data.get("pending") is True,
    )


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"not a version: {value!r}")
    number = int(value)
    if number < 1 or number > 10**12:
        raise ValueError(f"not a version: {value!r}")
    return number


def encode_claim(alias: str, token: str, who: str, to_version: int | None) -> tuple[str, str]:
    value = _fit({"who": who, "to": to_version, "at": time.time(), "reason": ""})
    return f"{CLAIM_PREFIX}{alias}.{token}", value


def decode_claim(key: str, value: str) -> Claim | Unreadable | None:
    if not key.startswith(CLAIM_PREFIX):
        return None
    match = _CLAIM_KEY.match(key)
    if not match:
        return Unreadable(key, "the key is not mlops.claim.<alias>.<token>")
    try:
        data = json.loads(value)
        return Claim(key, match["alias"], str(data["who"]), _opt_int(data["to"]), float(data["at"]))
    except (ValueError, KeyError, TypeError):
        return Unreadable(key, "the claim does not parse")
