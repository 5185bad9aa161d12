"""A stable front address for a deployment: forwards every request to the current model server.

`python -m server.router --listen 127.0.0.1:8080 --upstream http://127.0.0.1:41234`

Switching versions (`mlops deploy up` over an existing deployment, `mlops deploy rollback`):
the new model container is started and ready first, then ``PUT /-/router/upstream`` moves
traffic in one assignment; requests already forwarded finish on the old server, and the call
returns once they have (so the old container can be stopped with nothing in flight). A request
whose connection to the upstream is refused is retried once against the current upstream, so a
client never sees the switch. Guarded by ``MLOPS_ADMIN_TOKEN`` like the server's admin API.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
from collections import Counter
from typing import Any

import httpx
import uvicorn

log = logging.getLogger("server.router")

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
Scope = dict[str, Any]


class Router:
    """A minimal ASGI reverse proxy with an atomically switchable upstream."""

    def __init__(self, upstream: str, admin_token: str | None, timeout: float = 60.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.admin_token = admin_token
        self.in_flight: Counter[str] = Counter()
        self.switches = 0
        self._client = httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        if scope["path"].startswith("/-/router/"):
            status, payload = await self._admin(scope, body)
            await _respond(
                send, status, [(b"content-type", b"application/json")], json.dumps(payload).encode()
            )
            return
        await self._forward(scope, body, send)

    async def _forward(self, scope: Scope, body: bytes, send: Any) -> None:
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope["path"] + (f"?{query}" if query else "")
        for attempt in (1, 2):
            upstream = self.upstream
            self.in_flight[upstream] += 1
            try:
                response = await self._client.request(
                    scope["method"], upstream + path, content=body, headers=headers
                )
            except httpx.ConnectError as exc:
                # Nothing reached the upstream, so retrying (on the now-current one) is safe.
                if attempt == 1:
                    continue
                await _respond(
                    send,
                    502,
                    [(b"content-type", b"application/json")],
                    json.dumps(
                        {
                            "error": {
                                "type": "upstream_unreachable",
                                "message": str(exc),
                                "details": {"upstream": upstream},
                            }
                        }
                    ).encode(),
                )
                return
            finally:
                self.in_flight[upstream] -= 1
            out_headers = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in response.headers.items()
                if k.lower() not in HOP_BY_HOP
            ]
            await _respond(send, response.status_code, out_headers, response.content)
            return

    async def _admin(self, scope: Scope, body: bytes) -> tuple[int, dict[str, Any]]:
        path, method = scope["path"], scope["method"]
        if path == "/-/router/health":
            return 200, {"status": "ok", "upstream": self.upstream}
        if path != "/-/router/upstream":
            return 404, {"error": {"type": "not_found", "message": path, "details": {}}}
        if method == "GET":
            return 200, {
                "upstream": self.upstream,
                "switches": self.switches,
                "in_flight": dict(self.in_flight),
            }
        denied = self._denied(scope)
        if denied:
            return denied
        try:
            doc = json.loads(body)
            target = str(doc["upstream"]).rstrip("/")
            drain_timeout = float(doc.get("drain_timeout", 30))
        except (ValueError, KeyError, TypeError):
            return 400, {
                "error": {
                    "type": "invalid_payload",
                    "details": {},
                    "message": 'send {"upstream": "http://host:port"}',
                }
            }
        previous, self.upstream = self.upstream, target
        self.switches += 1
        drained = await self._drain(previous, drain_timeout)
        log.info("upstream %s -> %s (drained: %s)", previous, target, drained)
        return 200, {"previous": previous, "upstream": target, "drained": drained}

    def _denied(self, scope: Scope) -> tuple[int, dict[str, Any]] | None:
        def err(status: int, kind: str, message: str) -> tuple[int, dict[str, Any]]:
            return status, {"error": {"type": kind, "message": message, "details": {}}}

        if not self.admin_token:
            return err(403, "admin_disabled", "the router admin API is disabled (no token)")
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, given = header.partition(" ")
        if not header:
            return err(401, "unauthorized", "missing 'Authorization: Bearer <token>'")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), self.admin_token):
            return err(403, "forbidden", "wrong admin token")
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


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m server.router", description=__doc__)
    p.add_argument("--listen", default=os.environ.get("MLOPS_ROUTER_LISTEN", "127.0.0.1:8080"))
    p.add_argument("--upstream", default=os.environ.get("MLOPS_ROUTER_UPSTREAM"), required=False)
    args = p.parse_args(argv)
    if not args.upstream:
        p.error("--upstream (or MLOPS_ROUTER_UPSTREAM) is required")
    host, _, port = args.listen.rpartition(":")
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(message)s")
    router = Router(args.upstream, os.environ.get("MLOPS_ADMIN_TOKEN") or None)
    uvicorn.run(
        router,
        host=host or "127.0.0.1",
        port=int(port),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
