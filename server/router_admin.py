"""The router's admin API under ``/-/router/``: reading its state, and the changes to its
routing table (a switch, a canary, a promotion, a mirror).

Reads answer any loopback client; a change needs ``Authorization: Bearer <admin token>``. A
change that is not understood is refused with a JSON 4xx naming the field (400: not JSON;
422: a field missing, of the wrong type or out of range, or unknown), and the table is then
left as it was.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from prometheus_client import generate_latest

from server.routing import (
    InvalidChange,
    RoutingTable,
    Upstream,
    canary_from,
    drain_timeout_from,
    mirror_from,
)
from server.upstreams import is_service

if TYPE_CHECKING:
    from server.router import Router

Answer = tuple[int, dict[str, Any] | bytes]
Change = Callable[["Router", Any], Awaitable[Answer]]
PREFIX = "/-/router/"


def error_body(kind: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error every refusal carries, the model server's shape."""
    return {"error": {"type": kind, "message": message, "details": details or {}}}


async def admin(router: Router, scope: dict[str, Any], body: bytes) -> Answer:
    """The answer to one ``/-/router/...`` request."""
    path, method = scope["path"], scope["method"]
    if path == PREFIX + "health":
        return 200, {"status": "ok", "upstream": router.upstream, "version": router.version}
    if path == PREFIX + "metrics":
        return 200, generate_latest(router.registry)
    if path == PREFIX + "upstream":
        # As before canaries: GET reads, any other method switches.
        if method == "GET":
            return 200, {
                "upstream": router.upstream,
                "version": router.version,
                "switches": router.switches,
                "in_flight": dict(router.in_flight),
            }
        return await _guarded(router, scope, body, _switch, legacy=True)
    if path == PREFIX + "state":
        if method != "GET":
            return _not_allowed(path, method, "GET")
        return 200, state(router)
    changes = CHANGES.get(path)
    if changes is None:
        return 404, error_body("not_found", f"no router route {path}")
    change = changes.get(method)
    if change is None:
        return _not_allowed(path, method, *changes)
    return await _guarded(router, scope, body, change)


def state(router: Router) -> dict[str, Any]:
    """What ``GET /-/router/state`` answers."""
    table = router.table
    return {
        "stable": table.stable.to_json(),
        "canary": table.canary.to_json() if table.canary else None,
        "mirror": table.mirror.to_json() if table.mirror else None,
        "switches": router.switches,
        "changes": router.changes,
        "in_flight": {url: n for url, n in router.in_flight.items() if n},
        "mirror_in_flight": router.mirroring.in_flight,
    }


async def _guarded(
    router: Router, scope: dict[str, Any], body: bytes, change: Change, *, legacy: bool = False
) -> Answer:
    denied = token_refusal(router, scope)
    if denied:
        return denied
    try:
        doc = json.loads(body) if body.strip() else {}
    except ValueError as exc:
        if legacy:
            return 400, error_body("invalid_payload", 'send {"upstream": "http://host:port"}')
        return 400, error_body("invalid_json", f"the body is not JSON: {exc}")
    try:
        return await change(router, doc)
    except InvalidChange as exc:
        return 422, error_body("invalid_field", exc.message, {"field": exc.field})


def token_refusal(router: Router, scope: dict[str, Any]) -> Answer | None:
    if not router.admin_token:
        return 403, error_body("admin_disabled", "the router admin API is disabled (no token)")
    header = dict(scope["headers"]).get(b"authorization", b"")
    if not header:
        return 401, error_body("unauthorized", "missing 'Authorization: Bearer <token>'")
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer" or not hmac.compare_digest(
        given.strip(), router.admin_token.encode("utf-8")
    ):
        return 403, error_body("forbidden", "wrong admin token")
    return None


def _not_allowed(path: str, method: str, *allowed: str) -> Answer:
    return 405, error_body(
        "method_not_allowed", f"{method} {path}: use {', '.join(allowed)}", {"allowed": allowed}
    )


# ---------------------------------------------------------------------- the changes
# Each builds the new table from `router.table` and hands it to `router.apply` with no
# await in between: that is what makes a change atomic with respect to the others.


async def _switch(router: Router, doc: Any) -> Answer:
    try:
        target = str(doc["upstream"]).rstrip("/")
        version = str(doc.get("version") or "")
        drain_timeout = float(doc.get("drain_timeout", 30))
    except (ValueError, KeyError, TypeError, AttributeError):
        return 400, error_body("invalid_payload", 'send {"upstream": "http://host:port"}')
    if (unresolved := await _unresolved(router, target)) is not None:
        return unresolved
    table = replace(router.table, stable=Upstream(target, version))
    previous, drained = await router.apply(table, drain_timeout)
    return 200, {"previous": previous.stable.url, "upstream": target, "drained": drained}


async def _unresolved(router: Router, target: str) -> Answer | None:
    """409 for a service no task of which Swarm's DNS lists yet (it lists a task once it runs
    healthy, a moment after Swarm says so; or the service is gone): traffic sent there now
    would find nobody. The caller asks again."""
    if is_service(target) and not await router.endpoints.bases(target, fresh=True):
        return 409, error_body(
            "upstream_unresolved",
            f"{target} names no running task yet; nothing changed",
            {"field": "upstream"},
        )
    return None


async def _put_canary(router: Router, doc: Any) -> Answer:
    canary = canary_from(doc)
    if (unresolved := await _unresolved(router, canary.upstream.url)) is not None:
        return unresolved
    return await _set_canary(router, replace(router.table, canary=canary), doc)


async def _patch_canary(router: Router, doc: Any) -> Answer:
    current = router.table.canary
    if current is None:
        return 404, error_body("no_canary", "there is no canary to change: PUT one first")
    canary = canary_from(doc, current)
    return await _set_canary(router, replace(router.table, canary=canary), doc)


async def _set_canary(router: Router, table: RoutingTable, doc: Any) -> Answer:
    previous, drained = await router.apply(table, drain_timeout_from(doc))
    assert table.canary is not None
    return 200, {
        "canary": table.canary.to_json(),
        "previous": previous.canary.to_json() if previous.canary else None,
        "drained": drained,
    }


async def _delete_canary(router: Router, doc: Any) -> Answer:
    timeout = drain_timeout_from(doc)
    previous, drained = await router.apply(replace(router.table, canary=None), timeout)
    # Removing what is not there is not an error: a rollback can always ask for it.
    removed = previous.canary.to_json() if previous.canary else None
    return 200, {"removed": removed, "drained": drained}


async def _promote(router: Router, doc: Any) -> Answer:
    canary = router.table.canary
    if canary is None:
        return 409, error_body("no_canary", "there is no canary to promote")
    timeout = drain_timeout_from(doc)
    table = replace(router.table, stable=canary.upstream, canary=None)
    previous, drained = await router.apply(table, timeout)
    return 200, {
        "stable": table.stable.to_json(),
        "previous": previous.stable.to_json(),
        "drained": drained,
    }


async def _put_mirror(router: Router, doc: Any) -> Answer:
    mirror = mirror_from(doc)
    if (unresolved := await _unresolved(router, mirror.upstream.url)) is not None:
        return unresolved
    previous, _ = await router.apply(replace(router.table, mirror=mirror), 0)
    return 200, {
        "mirror": mirror.to_json(),
        "previous": previous.mirror.to_json() if previous.mirror else None,
    }


async def _delete_mirror(router: Router, doc: Any) -> Answer:
    previous, _ = await router.apply(replace(router.table, mirror=None), 0)
    return 200, {"removed": previous.mirror.to_json() if previous.mirror else None}


def _only_drain_timeout(change: Change) -> Change:
    """A change whose body may hold nothing but ``drain_timeout``."""

    async def checked(router: Router, doc: Any) -> Answer:
        if not isinstance(doc, dict):
            raise InvalidChange("body", "the body must be a JSON object, or empty")
        unknown = sorted(set(doc) - {"drain_timeout"})
        if unknown:
            raise InvalidChange(unknown[0], f"unknown field {unknown[0]!r}; known: drain_timeout")
        return await change(router, doc)

    return checked


def _no_fields(change: Change) -> Change:
    async def checked(router: Router, doc: Any) -> Answer:
        if doc not in ({}, None):
            raise InvalidChange("body", "this change takes no body")
        return await change(router, doc)

    return checked


CHANGES: dict[str, dict[str, Change]] = {
    PREFIX + "canary": {
        "PUT": _put_canary,
        "PATCH": _patch_canary,
        "DELETE": _only_drain_timeout(_delete_canary),
    },
    PREFIX + "canary/promote": {"POST": _only_drain_timeout(_promote)},
    PREFIX + "mirror": {"PUT": _put_mirror, "DELETE": _no_fields(_delete_mirror)},
}
