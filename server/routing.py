"""The router's routing table: where each request goes, held as one immutable value.

A change — a switch, a canary added, reweighted, promoted or removed, a mirror set — builds a
new table and the router assigns it in one statement. A request reads the table once, so it
finishes on the upstream it started on whatever changes meanwhile. The table is also what
``DIR/upstream.json`` holds: its top-level ``upstream`` and ``version`` stay the stable's, so a
file written before canaries existed still loads, and an older router reading a newer file
comes back on the stable.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

STABLE, CANARY, MIRROR = "stable", "canary", "mirror"  # the `role` label's values
_T = TypeVar("_T")
ALWAYS_STABLE = 100.0  # a draw no weight reaches: the request goes to the stable
# RFC 9110's token: what a header name may be.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")


class InvalidChange(ValueError):
    """An admin change the router refuses; ``field`` names the part that is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Upstream:
    """A model server's base URL and the model version it serves (a label, not checked)."""

    url: str
    version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"upstream": self.url, "version": self.version}


@dataclass(frozen=True)
class Canary:
    """A second version that gets ``weight`` percent of the requests."""

    upstream: Upstream
    weight: float
    sticky_header: str | None = None  # lower case; None: each request drawn on its own

    def to_json(self) -> dict[str, Any]:
        return {
            **self.upstream.to_json(),
            "weight": self.weight,
            "sticky_header": self.sticky_header,
        }


@dataclass(frozen=True)
class Mirror:
    """An upstream that gets a copy of ``percent`` percent of the prediction requests."""

    upstream: Upstream
    percent: float

    def to_json(self) -> dict[str, Any]:
        return {**self.upstream.to_json(), "percent": self.percent}


@dataclass(frozen=True)
class RoutingTable:
    """The stable upstream, an optional canary with its weight, an optional mirror."""

    stable: Upstream
    canary: Canary | None = None
    mirror: Mirror | None = None

    def route(self, draw: float) -> tuple[str, Upstream]:
        """The role and upstream for a request whose draw (in [0, 100]) is ``draw``."""
        if self.canary is not None and draw < self.canary.weight:
            return CANARY, self.canary.upstream
        return STABLE, self.stable

    def at(self, url: str | None) -> tuple[str, Upstream]:
        """The role and upstream serving at ``url``: the canary's when it is there, else the
        stable (the stable's own URL, or one that serves no more: a canary removed since)."""
        if self.canary is not None and self.canary.upstream.url == url:
            return CANARY, self.canary.upstream
        return STABLE, self.stable

    def draw(self, header: Any) -> float:
        """Where in [0, 100) a request falls: from its sticky header's value when the canary
        names one and the request carries it (so a user stays on one version, and stays on the
        canary as its weight grows), else at random. ``header(name)`` reads a request header."""
        sticky = self.canary.sticky_header if self.canary else None
        value = header(sticky) if sticky else None
        if value is None:
            return random.random() * 100
        digest = hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=8)
        return int.from_bytes(digest.digest(), "big") / 2**64 * 100

    def serving(self) -> frozenset[str]:
        """The URLs that answer clients (the mirror only gets copies)."""
        return frozenset({self.stable.url} | ({self.canary.upstream.url} if self.canary else set()))

    def to_json(self) -> dict[str, Any]:
        return {
            **self.stable.to_json(),
            "canary": self.canary.to_json() if self.canary else None,
            "mirror": self.mirror.to_json() if self.mirror else None,
        }

    @classmethod
    def from_json(cls, doc: Any) -> RoutingTable:
        """The table a state file holds; a canary or mirror that no longer validates is left
        out rather than keeping the router from starting. Raises InvalidChange without a
        usable stable."""
        if not isinstance(doc, dict):
            raise InvalidChange("upstream", "the state is not a JSON object")
        return cls(
            _upstream(doc, "upstream"),
            _optional(canary_from, doc.get("canary")),
            _optional(mirror_from, doc.get("mirror")),
        )


# ---------------------------------------------------------------------- admin input

CANARY_FIELDS = frozenset({"upstream", "version", "weight", "sticky_header", "drain_timeout"})
MIRROR_FIELDS = frozenset({"upstream", "version", "percent"})


def canary_from(doc: Any, current: Canary | None = None) -> Canary:
    """A canary from ``PUT /-/router/canary`` (all of it), or a change to ``current`` from
    ``PATCH`` (what is given replaces what was)."""
    fields = _known(doc, CANARY_FIELDS)
    if current is None:
        upstream = _upstream(fields, "upstream")
        weight = _percent(fields, "weight")
        sticky = _sticky(fields.get("sticky_header"))
    else:
        url = _url(fields["upstream"]) if "upstream" in fields else current.upstream.url
        version = _version(fields["version"]) if "version" in fields else current.upstream.version
        upstream = Upstream(url, version)
        weight = _percent(fields, "weight") if "weight" in fields else current.weight
        sticky = (
            _sticky(fields["sticky_header"]) if "sticky_header" in fields else current.sticky_header
        )
    return Canary(upstream, weight, sticky)


def mirror_from(doc: Any) -> Mirror:
    """A mirror from ``PUT /-/router/mirror``."""
    fields = _known(doc, MIRROR_FIELDS)
    return Mirror(_upstream(fields, "upstream"), _percent(fields, "percent"))


def drain_timeout_from(doc: Any, default: float = 30.0) -> float:
    """How long a change waits for requests on an upstream it removes (``drain_timeout``)."""
    value = doc.get("drain_timeout", default) if isinstance(doc, dict) else default
    if not _is_number(value) or not 0 <= value <= 3600:
        raise InvalidChange("drain_timeout", "drain_timeout must be a number of seconds, 0 to 3600")
    return float(value)


def _optional(parse: Callable[[Any], _T], doc: Any) -> _T | None:
    if not isinstance(doc, dict):
        return None
    try:
        return parse(doc)
    except InvalidChange:
        return None


def _known(doc: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidChange("body", "the body must be a JSON object")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InvalidChange(
            unknown[0], f"unknown field {unknown[0]!r}; known: {', '.join(sorted(allowed))}"
        )
    return doc


def _upstream(fields: dict[str, Any], key: str) -> Upstream:
    if key not in fields:
        raise InvalidChange(key, f"{key!r} is required: a model server's http:// URL")
    return Upstream(_url(fields[key]), _version(fields.get("version")))


def _url(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidChange("upstream", "upstream must be a string, e.g. http://127.0.0.1:8081")
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise InvalidChange("upstream", f"upstream {value!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidChange("upstream", f"upstream {value!r} is not an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise InvalidChange("upstream", f"upstream {value!r} must not carry a query or fragment")
    return value.strip().rstrip("/")


def _version(value: Any) -> str:
    if value is None:
        return ""
    # A registry version is a number to some callers and a string to others: both are fine.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidChange("version", "version must be a string (the model version's label)")
    return str(value)


def _percent(fields: dict[str, Any], key: str) -> float:
    if key not in fields:
        raise InvalidChange(key, f"{key!r} is required: a percentage from 0 to 100")
    value = fields[key]
    if not _is_number(value) or not 0 <= value <= 100:
        raise InvalidChange(key, f"{key} must be a number from 0 to 100, not {value!r}")
    return float(value)


def _sticky(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HEADER_NAME.fullmatch(value):
        raise InvalidChange(
            "sticky_header", f"sticky_header must be a header name such as X-User-Id, not {value!r}"
        )
    return value.lower()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
