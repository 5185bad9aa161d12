"""A stable front address for a deployment: forwards each request to a model server, the
stable or a canary by weight, and can copy prediction requests to a mirror.

`python -m server.router --listen 127.0.0.1:8080 --upstream http://127.0.0.1:41234
[--version 3] [--state-dir DIR]`

Where requests go is one immutable routing table (``server.routing``), replaced in one
assignment by each change, so a change fails no request: requests already forwarded finish on
the upstream they started on, and a change that takes an upstream out of service (a switch,
a promotion, a canary removed or replaced) returns once its requests have finished, so its
container can be stopped with nothing in flight. The table is written to ``DIR/upstream.json``
so a restarted router comes back on it.

- Switching versions (`mlops deploy up` over a deployment, `mlops deploy rollback`): the new
  model container is ready first, then ``PUT /-/router/upstream`` moves the stable.
- Canary: ``PUT /-/router/canary`` gives a second upstream ``weight`` percent of the requests,
  drawn per request, or by a hash of the header ``sticky_header`` names so a user stays on
  one version (a request without it is drawn on its own); ``PATCH`` changes the weight,
  ``POST /-/router/canary/promote`` makes it the stable, ``DELETE`` removes it. ``/metrics``
  and ``/admin/*`` always go to the stable: one scrape target, one admin target (a service's
  ``/metrics`` is every task's, labelled by task: ``server.metrics_merge``).
- Mirror: ``PUT /-/router/mirror`` copies ``percent`` percent of ``POST /predict`` and
  ``/invocations`` to a mirror in the background and compares its predictions with the
  client's (``server.mirror``); clients only ever get the stable's or canary's answer.
- Labels: a model server judges a label only for the requests it answered, so the router
  remembers the ``X-Request-Id`` of the latest canary answers (``MLOPS_ROUTER_CANARY_IDS``,
  200,000; least recent forgotten first) and sends each label of ``POST /feedback`` to the
  upstream that answered it, an id it does not know to the stable (``server.router_feedback``):
  a list spanning both is split, and the two reports merged in the client's order. A removed or
  replaced canary's ids go to the stable (which says not found); a promoted one's to it, the
  stable now. Without a canary, labels go to the stable like any request.
- ``GET /-/router/state``: the table, the requests in flight per upstream.
- ``GET /-/router/canary/metrics``: the canary's own /metrics (a service's: every task's,
  merged), for a canary its release cannot reach itself; like ``/-/router/health`` it needs no
  token from a remote client where ``--remote-admin`` lets them in.

What a client sees, whatever happens behind: a request that never reached the upstream (its
connection refused) is tried again on the current one; every other failure is a JSON 502, 503
or 504 naming its cause (``mlops_router_upstream_errors_total{cause}``), never a bare 500.
Every answer is counted in ``mlops_router_requests_total{version, role, status}``. Bodies
stream through, within a size limit (a readable 413), a read deadline (408) and a cap on
requests in flight (503 with Retry-After). ``/-/router/*`` answers loopback clients only, its
changes guarded by the admin token (MLOPS_ADMIN_TOKEN_FILE, or MLOPS_ADMIN_TOKEN), as are the
model server's ``/docs`` and ``/admin/*`` through it, unless ``--remote-admin``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter

from server.addresses import is_loopback
from server.metrics_merge import merge
from server.mirror import MIRRORED_PATHS, Copy, Mirroring
from server.request_ids import HEADER, request_id
from server.router_admin import admin, error_body, token_refusal
from server.router_feedback import AnsweredBy, Failure, Part, merged, part_answer, split
from server.router_request import BodyRefused, BodyStream, Refused, discard, header
from server.routing import ALWAYS_STABLE, CANARY, STABLE, Mirror, RoutingTable, Upstream
from server.upstreams import Endpoints, NoEndpoint, is_service

log = logging.getLogger("server.router")
REQUEST_ID = "mlops.request_id"  # the scope key the request's id travels under
STATE_FILE = "upstream.json"  # its name from before canaries: an old router's file still loads
FEEDBACK = "/feedback"

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
LOOPBACK_ONLY = ("/-/router/", "/docs", "/redoc", "/admin/")
HEALTH = "/-/router/health"  # answers anyone: a liveness probe says nothing secret
# The canary's own /metrics (every task's, for a service), as its release and Prometheus read
# them where the canary itself cannot be reached (a swarm's overlay): no more secret than the
# stable's /metrics, which answers anyone.
CANARY_METRICS = "/-/router/canary/metrics"
OPEN_ROUTES = (HEALTH, CANARY_METRICS)
Scope = dict[str, Any]
Headers = list[tuple[bytes, bytes]]


class Router:
    """A streaming ASGI reverse proxy over a routing table it swaps atomically."""

    def __init__(
        self,
        upstream: str,
        admin_token: str | None,
        *,
        state_dir: Path | None = None,
        timeout: float = 60.0,
        max_body_bytes: int = 5 * 1024 * 1024,
        body_timeout: float = 30.0,
        max_in_flight: int = 1024,
        remote_admin: bool = False,
        version: str = "",
        mirror_timeout: float = 10.0,
        mirror_max_in_flight: int = 16,
        mirror_window: int = 1000,
        canary_ids: int = 200_000,
        buffer_budget: int = 256 * 1024 * 1024,
    ) -> None:
        self.state_dir = state_dir
        self.table = self._restored(RoutingTable(Upstream(upstream.rstrip("/"), version)))
        self.admin_token = admin_token
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.max_in_flight = max_in_flight
        self.remote_admin = remote_admin
        self.in_flight: Counter[str] = Counter()  # by upstream URL: what a drain waits for
        self.switches = 0  # changes of the stable (a switch, a promotion)
        self.changes = 0  # changes of the table, of any kind
        # Which upstream answered the latest canary predictions: where their labels go.
        self.answered = AnsweredBy(canary_ids)
        # Which task of a service answered each of the latest predictions: its labels go there.
        self.task_of = AnsweredBy(canary_ids)
        # Idle upstream connections are dropped well before the model server's keep-alive
        # (75 s) would close them, so a connection is never reused just as it is closed.
        self.endpoints = Endpoints()  # a service upstream's tasks (server.upstreams)
        # Bytes of request bodies held whole at once (for a service's retries), and the most.
        self.buffered = 0
        self.buffer_budget = buffer_budget
        # A task that is gone does not refuse a connection, it never answers: another task is
        # tried after a second, not five.
        self._service_timeout = httpx.Timeout(timeout, connect=1.0)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(
                max_connections=512, max_keepalive_connections=64, keepalive_expiry=30.0
            ),
        )
        self.registry = CollectorRegistry()
        self.requests = PromCounter(
            "mlops_router_requests",
            "Requests the router answered, by the version and role that answered.",
            ["version", "role", "status"],
            registry=self.registry,
        )
        self.retries = PromCounter(
            "mlops_router_retries",
            "Requests sent again, to another task of a service or after a refused connection.",
            ["cause"],
            registry=self.registry,
        )
        self.upstream_errors = PromCounter(
            "mlops_router_upstream_errors",
            "Requests the upstream did not answer, by cause.",
            ["cause"],
            registry=self.registry,
        )
        self.mirroring = Mirroring(
            self.registry,
            self.requests,
            timeout=mirror_timeout,
            max_in_flight=mirror_max_in_flight,
            window=mirror_window,
        )

    @property
    def upstream(self) -> str:
        """The stable upstream's URL."""
        return self.table.stable.url

    @property
    def version(self) -> str:
        """The stable upstream's version label."""
        return self.table.stable.version

    # ------------------------------------------------------------------ state

    def _restored(self, given: RoutingTable) -> RoutingTable:
        """The table of the last change (a restarted router resumes it), else the given."""
        if self.state_dir is None:
            return given
        path = self.state_dir / STATE_FILE
        try:
            return RoutingTable.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return given
        except (OSError, ValueError) as exc:
            log.error("could not read %s (%s): starting on %s", path, exc, given.stable.url)
            return given

    def _save(self) -> None:
        if self.state_dir is None:
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(self.table.to_json()))
            tmp.replace(self.state_dir / STATE_FILE)
        except OSError as exc:  # serving goes on; a restart would come back on the old one
            log.error("could not save the routing table in %s: %s", self.state_dir, exc)

    async def apply(self, table: RoutingTable, drain_timeout: float) -> tuple[RoutingTable, bool]:
        """Serve from ``table`` from now on, then wait for the requests still on upstreams it
        no longer serves; the table it replaced, and whether they all finished in time.

        Callers build ``table`` from ``self.table`` with no await in between, and the
        assignment comes before this coroutine's first await: no change is lost to another."""
        previous, self.table = self.table, table
        self.changes += 1
        self.switches += previous.stable != table.stable
        self._save()
        if _mirror_url(previous) != _mirror_url(table):
            self.mirroring.reset()
        drained = True
        for url in sorted(previous.serving() - table.serving()):
            drained = await self._drain(url, drain_timeout) and drained
        self.endpoints.forget(self.table.serving())
        return previous, drained

    async def _drain(self, upstream: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight[upstream] > 0:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        # One id for the request from here on: the client's when carriable, else ours. The
        # upstream gets it, and the router's own refusals carry it too.
        rid = request_id(header(scope, HEADER.encode()))
        scope = {**scope, REQUEST_ID: rid}
        try:
            await self._http(scope, receive, send)
        except Refused as exc:
            await _error(
                send, exc.status, exc.kind, exc.message, close=exc.close, retry=exc.retry, rid=rid
            )
        except Exception as exc:  # never a bare 500: whatever broke, the client gets JSON
            log.exception("router failure")
            self.upstream_errors.labels(cause="router").inc()
            await _error(
                send, 502, "router_error", f"the router failed: {exc.__class__.__name__}", rid=rid
            )

    async def _http(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path.startswith(LOOPBACK_ONLY):
            client = (scope.get("client") or ("", 0))[0]
            if not is_loopback(client):
                if not self.remote_admin:
                    raise Refused(404, "not_found", f"{path} answers loopback clients only")
                # Widened to remote clients (a swarm's router): reads need the token too, but
                # for the liveness probe and the canary's figures, which say nothing secret.
                refused = token_refusal(self, scope) if path not in OPEN_ROUTES else None
                if refused is not None:
                    status, doc = refused
                    assert isinstance(doc, dict)
                    raise Refused(status, doc["error"]["type"], doc["error"]["message"])
        if path == CANARY_METRICS and scope["method"] in ("GET", "HEAD"):
            await self._canary_metrics(scope, send)
            return
        if path.startswith("/-/router/"):
            body = await self._read_all(scope, receive, limit=64 * 1024)
            status, payload = await admin(self, scope, body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            kind = b"text/plain; version=0.0.4" if isinstance(payload, bytes) else None
            await _respond(send, status, [(b"content-type", kind or b"application/json")], data)
            return
        total = sum(self.in_flight.values())
        if total >= self.max_in_flight:
            raise Refused(503, "overloaded", f"{total} requests in flight at the router", retry=1)
        await self._forward(scope, receive, send)

    # ------------------------------------------------------------------ forwarding

    async def _forward(self, scope: Scope, receive: Any, send: Any) -> None:
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
            and k.decode("latin-1").lower() != HEADER
        ]
        headers.append((HEADER, scope[REQUEST_ID]))
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Refused(400, "invalid_request", "Content-Length is not a number", close=True)
            if int(declared) > self.max_body_bytes:
                close = await discard(scope, receive, self.body_timeout, self.max_body_bytes)
                raise Refused(
                    413,
                    "payload_too_large",
                    f"body of {declared} bytes exceeds the limit of {self.max_body_bytes} bytes",
                    close=close,
                )
            headers.append(("content-length", declared))
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope["path"] + (f"?{query}" if query else "")
        # The table is read once: the request keeps its draw (and so its version) through a
        # retry, and a change made meanwhile applies to the requests that come after.
        table = self.table
        if (
            scope["path"] == "/metrics"
            and scope["method"] in ("GET", "HEAD")
            and is_service(table.stable.url)
        ):
            await self._tasks_metrics(scope, send, table.stable.url)
            return
        routed = table.canary is not None or is_service(table.stable.url)
        if scope["path"] == FEEDBACK and routed and _labels(scope, self):
            await self._feedback(scope, receive, send, path, headers)
            return
        if scope["path"] == "/metrics" or scope["path"].startswith("/admin/"):
            draw = ALWAYS_STABLE  # one scrape target and one admin target: the stable
        else:
            draw = table.draw(lambda name: header(scope, name.encode("latin-1")))
        mirror = self._mirror_for(table, scope)
        # A service's task may go away under a request (killed, or stopping): the body is read
        # whole first (within the size limit) so that a prediction whose task went away before
        # answering can go to another task — within a budget of bytes held at once, past which
        # a body streams through as to a single server (a crowd of large bodies must not run
        # the router out of memory).
        reserve = 0
        if any(is_service(url) for url in table.serving()):
            wanted = int(declared) if declared is not None else self.max_body_bytes
            if self.buffered + wanted <= self.buffer_budget:
                reserve = wanted
                self.buffered += reserve
        body: BodyStream | bytes = BodyStream(
            receive, self.max_body_bytes, self.body_timeout, keep=mirror is not None
        )
        try:
            if reserve:
                try:
                    body = await self._read_all(scope, receive, self.max_body_bytes)
                except BodyRefused as exc:
                    raise exc.refusal from None
            role, target, base, response = await self._send(scope, path, headers, body, draw)
            if response.status_code == 200 and scope["path"] in MIRRORED_PATHS:
                if role == CANARY:
                    self.answered.remember(scope[REQUEST_ID], target.url)
                if base != target.url:  # one of a service's tasks
                    self.task_of.remember(scope[REQUEST_ID], base)
            try:
                answer = await self._relay(scope, response, send, role, target, mirror is not None)
            finally:
                self._done(target.url, base)
                await response.aclose()
            if mirror is not None and (isinstance(body, bytes) or body.finished):
                # The client has its whole answer: from here the copy costs it nothing.
                self.mirroring.send(
                    Copy(
                        mirror,
                        path,
                        [(k, v) for k, v in headers if k.lower() != "content-length"],
                        body if isinstance(body, bytes) else b"".join(body.kept),
                        response.status_code,
                        answer,
                        response.headers.get("content-encoding", "").lower(),
                    )
                )
                mirror = None
        finally:
            self.buffered -= reserve
            if mirror is not None:
                self.mirroring.release()

    async def _send(
        self,
        scope: Scope,
        path: str,
        headers: list[tuple[str, str]],
        body: BodyStream | bytes,
        draw: float,
        to: str | None = None,
        task: str | None = None,
    ) -> tuple[str, Upstream, str, httpx.Response]:
        """The upstream's response (its headers; the body still to stream), counted in flight
        on that upstream and on the server that answers (``base``, one of a service's tasks
        or the upstream itself) until the caller calls ``_done``. The upstream is the one
        ``draw`` falls on, or with ``to`` the one serving at that URL (else the stable); with
        ``task``, that task of a service's first (labels for the predictions it made)."""
        tried: set[str] = set()
        for attempt in range(1, _ATTEMPTS + 1):
            role, target = self.table.route(draw) if to is None else self.table.at(to)
            # Counted on the upstream before the lookup's await: a switch draining it meanwhile
            # waits for this request too.
            self.in_flight[target.url] += 1
            try:
                base = await self.endpoints.pick(target.url, frozenset(tried))
                # The task that made the predictions, while the service still lists it and it
                # is not benched; else the one picked (which says not found).
                if (
                    task is not None
                    and task != base
                    and not tried
                    and is_service(target.url)
                    and await self.endpoints.usable(target.url, task)
                ):
                    base = task
            except BaseException as exc:
                self.in_flight[target.url] -= 1
                if not isinstance(exc, NoEndpoint):
                    raise
                self._failed(role, target, "connect", 503)
                raise Refused(503, "upstream_unreachable", str(exc), retry=1) from None
            self.endpoints.in_flight[base] += 1
            try:
                content = body if isinstance(body, bytes) else body.stream()
                request = self._client.build_request(
                    scope["method"],
                    base + path,
                    content=content,
                    headers=headers,
                    timeout=(
                        self._service_timeout if base != target.url else httpx.USE_CLIENT_DEFAULT
                    ),
                )
                return role, target, base, await self._client.send(request, stream=True)
            except BaseException as exc:
                self._done(target.url, base)
                tried.add(base)
                if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                    self.endpoints.failed(base)
                if attempt < _ATTEMPTS and _worth_again(exc, body, target.url, scope, attempt):
                    self.retries.labels(cause=_cause(exc)).inc()
                    continue
                raise self._refusal(role, target, exc) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _canary_metrics(self, scope: Scope, send: Any) -> None:
        """The canary's /metrics alone (not the router's own): a service's tasks together,
        a single server's as it answers; 404 without a canary."""
        canary = self.table.canary
        if canary is None:
            raise Refused(404, "not_found", "the router has no canary")
        url = canary.upstream.url
        if is_service(url):
            await self._tasks_metrics(scope, send, url, own=False)
            return
        wait = _scrape_seconds(header(scope, b"x-prometheus-scrape-timeout-seconds"))
        try:
            response = await self._client.get(
                f"{url}/metrics", timeout=httpx.Timeout(wait, connect=min(1.0, wait))
            )
        except httpx.HTTPError as exc:
            raise Refused(503, "upstream_unreachable", f"the canary did not answer: {exc}") from exc
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        body = response.content if scope["method"] == "GET" else b""
        await _respond(send, response.status_code, headers, body)

    async def _tasks_metrics(self, scope: Scope, send: Any, url: str, own: bool = True) -> None:
        """/metrics of a service: every task's, together (``server.metrics_merge``), then
        ours (``own``). A task that does not answer within the scrape's time (Prometheus says
        how long it waits; else 3 s) costs its own samples only; none answering is a 503, as a
        scrape of a single server that is down would fail."""
        bases = await self.endpoints.bases(url)
        wait = _scrape_seconds(header(scope, b"x-prometheus-scrape-timeout-seconds"))
        timeout = httpx.Timeout(wait, connect=min(1.0, wait))

        async def scrape(base: str) -> str | None:
            try:
                response = await self._client.get(f"{base}/metrics", timeout=timeout)
            except httpx.HTTPError:
                return None
            return response.text if response.status_code == 200 else None

        answers = await asyncio.gather(*(scrape(b) for b in bases))
        found = {urlsplit(b).netloc: text for b, text in zip(bases, answers, strict=True) if text}
        if not found:
            host = urlsplit(url).hostname
            raise Refused(503, "upstream_unreachable", f"no task of {host} answered /metrics")
        # Parsing every task's text is CPU work: off the loop, which predictions share.
        body = await asyncio.to_thread(merge, found)
        if not own:
            headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
            await _respond(send, 200, headers, body if scope["method"] == "GET" else b"")
            return
        body += generate_latest(self.registry)
        self.requests.labels(version=self.table.stable.version, role=STABLE, status="200").inc()
        headers = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        if scope["method"] == "HEAD":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        await _respond(send, 200, headers, body)

    def _done(self, upstream: str, base: str) -> None:
        self.in_flight[upstream] -= 1
        self.endpoints.in_flight[base] -= 1

    async def _feedback(
        self, scope: Scope, receive: Any, send: Any, path: str, headers: list[tuple[str, str]]
    ) -> None:
        """Labels, each to the upstream that answered its prediction (``server.router_feedback``):
        to one upstream as they came, or split, sent to both, and their reports merged."""
        try:
            body = await self._read_all(scope, receive, limit=self.max_body_bytes)
        except BodyRefused as exc:
            raise exc.refusal from None
        items, parts = split(body, self.table, self.answered, self.task_of)
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        if len(parts) == 1:
            role, target, base, response = await self._send(
                scope, path, headers, body, ALWAYS_STABLE, to=parts[0].url, task=parts[0].task
            )
            try:
                await self._relay(scope, response, send, role, target, False)
            finally:
                self._done(target.url, base)
                await response.aclose()
            return
        answers = await asyncio.gather(*(self._part(scope, path, headers, p) for p in parts))
        status, doc = merged(items, parts, list(answers))
        data = json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        await _respond(send, status, [(b"content-type", b"application/json")], data.encode())

    async def _part(
        self, scope: Scope, path: str, headers: list[tuple[str, str]], part: Part
    ) -> list[dict[str, Any]] | Failure:
        """One part's per-item results from its upstream, or why it has none."""
        try:
            role, target, base, response = await self._send(
                scope, path, headers, part.body, ALWAYS_STABLE, to=part.url, task=part.task
            )
        except Refused as exc:  # counted by _send; the message names the upstream
            return Failure(exc.status, exc.kind, exc.message)
        who = f"the {role} ({target.url})"
        try:
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > 4 * self.max_body_bytes:  # a report is about its labels' size
                    self._failed(role, target, "error", 502)
                    return Failure(502, "upstream_error", f"{who} answered too much")
                chunks.append(chunk)
        except httpx.TimeoutException:
            self._failed(role, target, "timeout", 504)
            return Failure(504, "upstream_timeout", f"{who} did not answer in time")
        except httpx.HTTPError as exc:
            self._failed(role, target, "disconnected", 502)
            return Failure(502, "upstream_disconnected", f"{who} failed: {exc.__class__.__name__}")
        finally:
            self._done(target.url, base)
            await response.aclose()
        status = response.status_code
        self.requests.labels(version=target.version, role=role, status=str(status)).inc()
        return part_answer(status, b"".join(chunks), len(part.positions), who)

    def _mirror_for(self, table: RoutingTable, scope: Scope) -> Mirror | None:
        """The mirror this request is copied to (a place reserved for it), or None."""
        mirror = table.mirror
        if mirror is None or scope["method"] != "POST" or scope["path"] not in MIRRORED_PATHS:
            return None
        if random.random() * 100 >= mirror.percent or not self.mirroring.reserve():
            return None
        return mirror

    async def _relay(
        self,
        scope: Scope,
        response: httpx.Response,
        send: Any,
        role: str,
        target: Upstream,
        keep: bool,
    ) -> bytes | None:
        """Stream the upstream's answer to the client; its body too when ``keep`` (for the
        mirror to compare with), unless it is larger than a request may be."""
        out: Headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.items()
            if k.lower() not in HOP_BY_HOP or k.lower() == "content-length"
        ]
        chunks = response.aiter_raw()
        try:
            first = await anext(chunks, b"")
        except httpx.HTTPError as exc:
            self._failed(role, target, "disconnected", 502)
            raise Refused(502, "upstream_disconnected", f"the upstream failed: {exc}") from exc
        extra = b""
        if scope["path"] == "/metrics" and response.status_code == 200:
            # One scrape target for the deployment: the model server's figures, then ours.
            extra = generate_latest(self.registry)
            out = [(k, v) for k, v in out if k.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        self.requests.labels(
            version=target.version, role=role, status=str(response.status_code)
        ).inc()
        kept: list[bytes] | None = [first] if keep else None
        size = len(first)
        try:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                size += len(chunk)
                if kept is not None and size > self.max_body_bytes:
                    kept = None
                elif kept is not None:
                    kept.append(chunk)
        except httpx.HTTPError:
            # Headers are out: all that is left is to end the answer short, and count it.
            self.upstream_errors.labels(cause="disconnected").inc()
            kept = None
        await send({"type": "http.response.body", "body": extra, "more_body": False})
        return b"".join(kept) if kept is not None else None

    def _refusal(self, role: str, target: Upstream, exc: BaseException) -> BaseException:
        """What the client is told when the upstream did not answer (the exception itself when
        it is not the upstream's doing: a body refused, a cancellation)."""
        upstream = target.url
        if isinstance(exc, BodyRefused):
            return exc.refusal
        if isinstance(exc, httpx.ConnectError):
            self._failed(role, target, "connect", 503)
            return Refused(503, "upstream_unreachable", f"{upstream} refused the connection")
        if isinstance(exc, httpx.TimeoutException):
            self._failed(role, target, "timeout", 504)
            return Refused(504, "upstream_timeout", f"{upstream} did not answer in time")
        if isinstance(exc, httpx.HTTPError):
            cause = "disconnected" if _disconnected(exc) else "error"
            self._failed(role, target, cause, 502)
            return Refused(502, f"upstream_{cause}", f"{upstream} failed: {exc.__class__.__name__}")
        return exc

    def _failed(self, role: str, target: Upstream, cause: str, status: int) -> None:
        self.upstream_errors.labels(cause=cause).inc()
        self.requests.labels(version=target.version, role=role, status=str(status)).inc()
        log.warning("upstream %s (%s): %s", target.url, role, cause)

    async def _read_all(self, scope: Scope, receive: Any, limit: int) -> bytes:
        chunks = [c async for c in BodyStream(receive, limit, self.body_timeout).stream()]
        return b"".join(chunks)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.mirroring.close()
                await self.endpoints.close()
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _mirror_url(table: RoutingTable) -> str | None:
    return table.mirror.upstream.url if table.mirror else None


# ---------------------------------------------------------------------- helpers


# A request is tried on up to three of a service's tasks; on a single server, once more after
# a refused connection (on the then-current upstream: a switch may have just happened).
_ATTEMPTS = 3


def _worth_again(
    exc: BaseException, body: BodyStream | bytes, upstream: str, scope: Scope, attempt: int
) -> bool:
    """Whether a request that failed with ``exc`` before any answer is sent again: when it
    never reached the server (a refused connection), or, for a service, a prediction whose
    task went away under it (a replica killed: another answers the same rows) — once, so a
    request that itself kills the server it reaches does not take a second one down."""
    if not (isinstance(body, bytes) or not body.started):
        return False
    if not is_service(upstream):
        return attempt == 1 and isinstance(exc, httpx.ConnectError)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    prediction = scope["method"] == "POST" and scope["path"] in MIRRORED_PATHS
    return prediction and attempt == 1 and isinstance(exc, httpx.HTTPError) and _disconnected(exc)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return "connect"
    return "disconnected"


def _disconnected(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError)


def _scrape_seconds(given: str | None) -> float:
    """How long a task's /metrics may take: most of the scrape's own timeout as Prometheus
    sends it (so that the answer reaches it in time), else 3 s."""
    try:
        seconds = float(given) * 0.8 if given else 3.0
    except ValueError:
        seconds = 3.0
    return min(max(seconds, 0.2), 30.0) if seconds == seconds else 3.0


def _labels(scope: Scope, router: Router) -> bool:
    """Whether a request to /feedback is labels to route by who answered: POSTed as JSON (all
    the model server takes) while the router remembers canary or task answers; else it goes as
    any."""
    if scope["method"] != "POST" or not (router.answered or router.task_of):
        return False
    mime = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    return mime == "application/json"


async def _error(
    send: Any,
    status: int,
    kind: str,
    message: str,
    *,
    close: bool = False,
    retry: int = 0,
    rid: str = "",
) -> None:
    headers: Headers = [(b"content-type", b"application/json")]
    if rid:
        headers.append((HEADER.encode(), rid.encode("latin-1")))
    if close:
        headers.append((b"connection", b"close"))
    if retry:
        headers.append((b"retry-after", str(retry).encode()))
    try:
        await _respond(send, status, headers, json.dumps(error_body(kind, message)).encode())
    except Exception:  # the response had begun, or the client is gone: nothing left to say
        log.debug("could not answer %s", status)


async def _respond(send: Any, status: int, headers: Headers, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from server.config import admin_token_from
    from server.http_guard import guarded

    env = os.environ
    p = argparse.ArgumentParser(prog="python -m server.router", description=__doc__)
    p.add_argument("--listen", default=env.get("MLOPS_ROUTER_LISTEN", "127.0.0.1:8080"))
    p.add_argument("--upstream", default=env.get("MLOPS_ROUTER_UPSTREAM"), required=False)
    p.add_argument("--version", default=env.get("MLOPS_ROUTER_VERSION", ""))
    p.add_argument("--state-dir", type=Path, default=env.get("MLOPS_ROUTER_STATE_DIR") or None)
    p.add_argument(
        "--remote-admin", action="store_true", default=bool(env.get("MLOPS_ROUTER_REMOTE_ADMIN"))
    )
    p.add_argument(
        "--access-log", action="store_true", default=bool(env.get("MLOPS_ROUTER_ACCESS_LOG"))
    )
    args = p.parse_args(argv)
    if not args.upstream:
        p.error("--upstream (or MLOPS_ROUTER_UPSTREAM) is required")
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")  # [::1]:8080 as a URL writes it
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(message)s")
    # httpx logs every request it makes at INFO: per-request logs only when asked for.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.INFO if args.access_log else logging.WARNING)
    router = Router(
        args.upstream,
        admin_token_from(env),
        state_dir=args.state_dir,
        max_body_bytes=int(env.get("MLOPS_MAX_BODY_BYTES", 5 * 1024 * 1024)),
        body_timeout=float(env.get("MLOPS_BODY_TIMEOUT", 30)),
        max_in_flight=int(env.get("MLOPS_ROUTER_MAX_IN_FLIGHT", 1024)),
        remote_admin=args.remote_admin,
        version=args.version,
        mirror_timeout=float(env.get("MLOPS_ROUTER_MIRROR_TIMEOUT", 10)),
        mirror_max_in_flight=int(env.get("MLOPS_ROUTER_MIRROR_MAX_IN_FLIGHT", 16)),
        mirror_window=int(env.get("MLOPS_ROUTER_MIRROR_WINDOW", 1000)),
        canary_ids=int(env.get("MLOPS_ROUTER_CANARY_IDS", 200_000)),
        buffer_budget=int(env.get("MLOPS_ROUTER_BUFFER_BYTES", 256 * 1024 * 1024)),
    )
    uvicorn.run(
        router,
        host=host or "127.0.0.1",
        port=int(port),
        log_level="warning",
        access_log=args.access_log,
        http=guarded(float(env.get("MLOPS_HEADER_TIMEOUT", 10))),
        timeout_keep_alive=int(env.get("MLOPS_KEEP_ALIVE", 75)),
        timeout_graceful_shutdown=int(env.get("MLOPS_DRAIN_SECONDS", 25)),
    )


if __name__ == "__main__":
    main()
