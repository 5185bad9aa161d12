"""uvicorn's httptools protocol with a header deadline (a slowloris guard).

uvicorn times out idle kept-alive connections but not a request's headers: a client that
sends a byte of them every few seconds holds its connection (and its memory) forever. Here a
connection must finish each request's headers within ``header_timeout`` seconds of opening
(or of its first byte after a response); otherwise it gets a 408 and is closed.

Closing is lingering, as nginx's ``lingering_close``: a connection the server ends while the
client is still sending (a 408 for a trickled body, a 413 for one too large) is half-closed
first (our answer, then FIN), and what the client goes on sending is read and dropped for up
to ``LINGER`` seconds or until it closes. Closed at once instead, the kernel answers the
client's next byte with a reset, and a reset discards the answer the client had not yet read:
it would see "connection reset" instead of the 408 that says what happened.

This subclasses uvicorn's ``HttpToolsProtocol`` (its ``connection_made``, ``on_message_begin``,
``on_headers_complete`` and ``connection_lost`` hooks): uvicorn is pinned below its next minor
release in pyproject.toml for that reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LINGER = 2.0  # seconds a half-closed connection is read (and dropped) before it is closed

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

        _lingering: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(_Lingering(transport, self))  # type: ignore[arg-type]
            self._arm()

        def start_lingering(self, close: Any) -> None:
            self._disarm()
            self._lingering = self.loop.call_later(LINGER, close)

        def data_received(self, data: bytes) -> None:
            if self._lingering is None:
                super().data_received(data)
            # else: the client still sending after our answer; dropped unread

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._lingering is not None:
                self._lingering.cancel()
            super().connection_lost(exc)

    return GuardedHttpTools


class _Lingering:
    """The connection's transport, whose ``close`` half-closes and lingers (module docstring).
    uvicorn and the header timer call ``close`` on it; everything else passes through."""

    def __init__(self, transport: Any, protocol: Any) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self._closing or bool(self._transport.is_closing())

    def close(self) -> None:
        if self.is_closing():
            return
        self._closing = True
        if not self._transport.can_write_eof():
            self._transport.close()
            return
        self._transport.resume_reading()  # uvicorn may have paused it: the drain must read
        self._transport.write_eof()  # after what is buffered: the answer, then FIN
        self._protocol.start_lingering(self._transport.close)
