"""A stable front address for a deployment: forwards every request to the current model server.

`python -m server.router --listen 127.0.0.1:8080 --upstream http://127.0.0.1:41234
[--state-dir DIR]`

Switching versions (`mlops deploy up` over an existing deployment, `mlops deploy rollback`):
the new model container is started and ready first, then ``PUT /-/router/upstream`` moves
traffic in one assignment; requests already forwarded finish on the old server, and the call
returns once they have (so the old container can be stopped with nothing in flight). The
upstream is written to ``DIR/upstream.json``, so a restarted router comes back on it.

What a client sees, whatever happens behind: a request that never reached the upstream (its
connection refused) is tried again on the current one; every other failure is a JSON 502, 503
or 504 naming its cause (``mlops_router_upstream_errors_total{cause}``), never a bare 500.
Bodies stream through, within a size limit (a readable 413), a read deadline (408) and a cap
on requests in flight (503 with Retry-After). ``/-/router/*`` answers loopback clients only,
guarded by the admin token (MLOPS_ADMIN_TOKEN_FILE, or MLOPS_ADMIN_TOKEN), as are the model
server's ``/docs`` and ``/admin/*`` through it, unless ``--remote-admin``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter

from server.request_ids import HEADER, request_id

log = logging.getLogger("server.router")
REQUEST_ID = "mlops.request_id"  # the scope key the request's id travels under

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
Scope = dict[str, Any]
Headers = list[tuple[bytes, bytes]]


class Refused(Exception):
    """A request the router answers itself, with a JSON error."""

    def __init__(
        self, status: int, kind: str, message: str, *, close: bool = False, retry: int = 0
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.close, self.retry = (
            status,
            kind,
            message,
            close,
            retry,
        )


class Router:
    """A streaming ASGI reverse proxy with an atomically switchable upstream."""

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
    ) -> None:
        self.state_dir = state_dir
        self.upstream, self.version = self._restored(upstream.rstrip("/"), version)
        self.admin_token = admin_token
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.max_in_flight = max_in_flight
        self.remote_admin = remote_admin
        self.in_flight: Counter[str] = Counter()
        self.switches = 0
        # Idle upstream connections are dropped well before the model server's keep-alive
        # (75 s) would close them, so a connection is never reused just as it is closed.
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
        self.upstream_errors = PromCounter(
            "mlops_router_upstream_errors",
            "Requests the upstream did not answer, by cause.",
            ["cause"],
            registry=self.registry,
        )

    # ------------------------------------------------------------------ state

    def _restored(self, upstream: str, version: str) -> tuple[str, str]:
        """The upstream of the last switch (a restarted router resumes it), else the given."""
        if self.state_dir is None:
            return upstream, version
        try:
            doc = json.loads((self.state_dir / "upstream.json").read_text())
            return str(doc["upstream"]).rstrip("/"), str(doc.get("version") or "")
        except (OSError, ValueError, KeyError, TypeError):
            return upstream, version

    def _save(self) -> None:
        if self.state_dir is None:
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / "upstream.json.tmp"
            tmp.write_text(json.dumps({"upstream": self.upstream, "version": self.version}))
            tmp.replace(self.state_dir / "upstream.json")
        except OSError as exc:  # serving goes on; a restart would come back on the old one
            log.error("could not save the upstream in %s: %s", self.state_dir, exc)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        # One id for the request from here on: the client's when carriable, else ours. The
        # upstream gets it, and the router's own refusals carry it too.
        rid = request_id(_header(scope, HEADER.encode()))
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
        if path.startswith(LOOPBACK_ONLY) and not self.remote_admin:
            client = (scope.get("client") or ("", 0))[0]
            if not _is_loopback(client):
                raise Refused(404, "not_found", f"{path} answers loopback clients only")
        if path.startswith("/-/router/"):
            body = await self._read_all(scope, receive, limit=64 * 1024)
            status, payload = await self._admin(scope, body)
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
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Refused(400, "invalid_request", "Content-Length is not a number", close=True)
            if int(declared) > self.max_body_bytes:
                close = await _discard(scope, receive, self.body_timeout, self.max_body_bytes)
                raise Refused(
                    413,
                    "payload_too_large",
                    f"body of {declared} bytes exceeds the limit of {self.max_body_bytes} bytes",
                    close=close,
                )
            headers.append(("content-length", declared))
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope["path"] + (f"?{query}" if query else "")
        body = _BodyStream(receive, self.max_body_bytes, self.body_timeout)
        response = None
        upstream = self.upstream
        for attempt in (1, 2):
            upstream = self.upstream
            self.in_flight[upstream] += 1
            try:
                request = self._client.build_request(
                    scope["method"], upstream + path, content=body.stream(), headers=headers
                )
                response = await self._client.send(request, stream=True)
            except BaseException as exc:
                self.in_flight[upstream] -= 1
                # Nothing reached the upstream, so trying again (on the now-current one) is safe.
                if isinstance(exc, httpx.ConnectError) and attempt == 1 and not body.started:
                    continue
                raise self._refusal(upstream, exc) from exc
            break
        assert response is not None
        try:
            await self._relay(scope, response, send)
        finally:
            self.in_flight[upstream] -= 1
            await response.aclose()

    async def _relay(self, scope: Scope, response: httpx.Response, send: Any) -> None:
        out: Headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.items()
            if k.lower() not in HOP_BY_HOP or k.lower() == "content-length"
        ]
        chunks = response.aiter_raw()
        try:
            first = await anext(chunks, b"")
        except httpx.HTTPError as exc:
            self._failed(self.upstream, "disconnected")
            raise Refused(502, "upstream_disconnected", f"the upstream failed: {exc}") from exc
        extra = b""
        if scope["path"] == "/metrics" and response.status_code == 200:
            # One scrape target for the deployment: the model server's figures, then ours.
            extra = generate_latest(self.registry)
            out = [(k, v) for k, v in out if k.lower() != b"content-length"]
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        self.requests.labels(
            version=self.version, role="stable", status=str(response.status_code)
        ).inc()
        try:
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for chunk in chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError:
            # Headers are out: all that is left is to end the answer short, and count it.
            self.upstream_errors.labels(cause="disconnected").inc()
        await send({"type": "http.response.body", "body": extra, "more_body": False})

    def _refusal(self, upstream: str, exc: BaseException) -> BaseException:
        """What the client is told when the upstream did not answer (the exception itself when
        it is not the upstream's doing: a body refused, a cancellation)."""
        if isinstance(exc, _BodyRefused):
            return exc.refusal
        if isinstance(exc, httpx.ConnectError):
            self._failed(upstream, "connect")
            return Refused(503, "upstream_unreachable", f"{upstream} refused the connection")
        if isinstance(exc, httpx.TimeoutException):
            self._failed(upstream, "timeout")
            return Refused(504, "upstream_timeout", f"{upstream} did not answer in time")
        if isinstance(exc, httpx.HTTPError):
            cause = "disconnected" if _disconnected(exc) else "error"
            self._failed(upstream, cause)
            return Refused(502, f"upstream_{cause}", f"{upstream} failed: {exc.__class__.__name__}")
        return exc

    def _failed(self, upstream: str, cause: str) -> None:
        self.upstream_errors.labels(cause=cause).inc()
        self.requests.labels(version=self.version, role="stable", status="502").inc()
        log.warning("upstream %s: %s", upstream, cause)

    async def _read_all(self, scope: Scope, receive: Any, limit: int) -> bytes:
        chunks = [c async for c in _BodyStream(receive, limit, self.body_timeout).stream()]
        return b"".join(chunks)

    # ------------------------------------------------------------------ admin

    async def _admin(self, scope: Scope, body: bytes) -> tuple[int, dict[str, Any] | bytes]:
        path, method = scope["path"], scope["method"]
        if path == "/-/router/health":
            return 200, {"status": "ok", "upstream": self.upstream, "version": self.version}
        if path == "/-/router/metrics":
            return 200, generate_latest(self.registry)
        if path != "/-/router/upstream":
            return 404, _body("not_found", path)
        if method == "GET":
            return 200, {
                "upstream": self.upstream,
                "version": self.version,
                "switches": self.switches,
                "in_flight": dict(self.in_flight),
            }
        denied = self._denied(scope)
        if denied:
            return denied
        try:
            doc = json.loads(body)
            target = str(doc["upstream"]).rstrip("/")
            version = str(doc.get("version") or "")
            drain_timeout = float(doc.get("drain_timeout", 30))
        except (ValueError, KeyError, TypeError):
            return 400, _body("invalid_payload", 'send {"upstream": "http://host:port"}')
        previous, self.upstream, self.version = self.upstream, target, version
        self.switches += 1
        self._save()
        drained = await self._drain(previous, drain_timeout)
        log.info("upstream %s -> %s (drained: %s)", previous, target, drained)
        return 200, {"previous": previous, "upstream": target, "drained": drained}

    def _denied(self, scope: Scope) -> tuple[int, dict[str, Any]] | None:
        if not self.admin_token:
            return 403, _body("admin_disabled", "the router admin API is disabled (no token)")
        header = dict(scope["headers"]).get(b"authorization", b"")
        if not header:
            return 401, _body("unauthorized", "missing 'Authorization: Bearer <token>'")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(
            given.strip(), self.admin_token.encode("utf-8")
        ):
            return 403, _body("forbidden", "wrong admin token")
        return None

    async def _drain(self, upstream: str, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight[upstream] > 0:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


# ---------------------------------------------------------------------- request bodies


class _BodyRefused(Exception):
    def __init__(self, refusal: Refused) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class _BodyStream:
    """The client's body as it arrives, within a size limit and a deadline for all of it."""

    def __init__(self, receive: Any, limit: int, timeout: float) -> None:
        self.receive = receive
        self.limit = limit
        self.timeout = timeout
        self.started = False

    async def stream(self) -> AsyncIterator[bytes]:
        self.started = True
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await self.receive()
            except TimeoutError:
                raise _BodyRefused(
                    Refused(
                        408,
                        "request_timeout",
                        f"the body did not arrive within {self.timeout:g}s",
                        close=True,
                    )
                ) from None
            if message["type"] == "http.disconnect":
                raise _BodyRefused(Refused(499, "client_disconnected", "the client went away"))
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise _BodyRefused(
                    Refused(
                        413,
                        "payload_too_large",
                        f"body exceeds the limit of {self.limit} bytes",
                        close=True,
                    )
                )
            if chunk:
                yield chunk
            if not message.get("more_body"):
                return


async def _discard(scope: Scope, receive: Any, timeout: float, limit: int) -> bool:
    """Read and drop a body the router refuses, so the client can read the refusal; True when
    the connection must close instead (a 100-continue client, or far too much)."""
    expect = (_header(scope, b"expect") or "").lower()
    if "100-continue" in expect:
        return True
    cap = max(4 * limit, 32 * 1024 * 1024)
    read = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return True
                read += len(message.get("body", b""))
                if read > cap:
                    return True
                if not message.get("more_body"):
                    return False
    except TimeoutError:
        return True


# ---------------------------------------------------------------------- helpers


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k.lower() == name:
            return str(v.decode("latin-1"))
    return None


def _disconnected(exc: httpx.HTTPError) -> bool:
    return isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError)


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host.removeprefix("::ffff:")).is_loopback
    except ValueError:
        return host == "localhost"


def _body(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, "details": {}}}


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
        await _respond(send, status, headers, json.dumps(_body(kind, message)).encode())
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
