"""uvicorn's httptools protocol with a header deadline (a slowloris guard).

uvicorn times out idle kept-alive connections but not a request's headers: a client that
sends a byte of them every few seconds holds its connection (and its memory) forever. Here a
connection must finish each request's headers within ``header_timeout`` seconds of opening
(or of its first byte after a response); otherwise it gets a 408 and is closed.

This subclasses uvicorn's ``HttpToolsProtocol`` (its ``connection_made``, ``on_message_begin``,
``on_headers_complete`` and ``connection_lost`` hooks): uvicorn is pinned below its next minor
release in pyproject.toml for that reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def guarded(header_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``)."""

    class GuardedHttpTools(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            if self.transport is None or self.transport.is_closing():
                return
            body = (
                b'{"error": {"type": "request_timeout", "message": "the request headers did '
                b'not arrive within %g s", "details": {}}}' % header_timeout
            )
            self.transport.write(_TIMED_OUT % (len(body), body))
            self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedHttpTools
