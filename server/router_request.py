"""What the router reads of a client's request before forwarding it: the body as it arrives,
within a size limit and a deadline, and the refusals it answers itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

Scope = dict[str, Any]


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


class BodyRefused(Exception):
    """The body was refused while it streamed: ``refusal`` is what the client is told."""

    def __init__(self, refusal: Refused) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class BodyStream:
    """The client's body as it arrives, within a size limit and a deadline for all of it."""

    def __init__(self, receive: Any, limit: int, timeout: float, *, keep: bool = False) -> None:
        self.receive = receive
        self.limit = limit
        self.timeout = timeout
        self.started = False
        self.finished = False  # all of it arrived (and went on)
        self.keep = keep  # a copy of the chunks is kept in `kept` (for the mirror)
        self.kept: list[bytes] = []

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
                raise BodyRefused(
                    Refused(
                        408,
                        "request_timeout",
                        f"the body did not arrive within {self.timeout:g}s",
                        close=True,
                    )
                ) from None
            if message["type"] == "http.disconnect":
                raise BodyRefused(Refused(499, "client_disconnected", "the client went away"))
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise BodyRefused(
                    Refused(
                        413,
                        "payload_too_large",
                        f"body exceeds the limit of {self.limit} bytes",
                        close=True,
                    )
                )
            if chunk:
                if self.keep:
                    self.kept.append(chunk)
                yield chunk
            if not message.get("more_body"):
                self.finished = True
                return


async def discard(scope: Scope, receive: Any, timeout: float, limit: int) -> bool:
    """Read and drop a body the router refuses, so the client can read the refusal; True when
    the connection must close instead (a 100-continue client, or far too much)."""
    expect = (header(scope, b"expect") or "").lower()
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


def header(scope: Scope, name: bytes) -> str | None:
    """The request header ``name`` (lower case), if the client sent it."""
    for k, v in scope["headers"]:
        if k.lower() == name:
            return str(v.decode("latin-1"))
    return None
