"""Upstreams that are many servers: a Swarm service's tasks, found through Swarm's DNS.

An upstream URL whose host is ``tasks.<service>`` stands for every task of a Swarm service
that is running (and, with a health check, healthy): Swarm's DNS answers that name with one
address per such task. The router resolves it itself, at most once a second (the answer is
served while the next one is fetched), and sends each request to the address with the fewest
of its requests in flight, ties at random, so a slow replica gets fewer. An address that
refused a connection or did not accept one in time is left out for a few seconds: a replica
killed or stopping, whose name Swarm's DNS may still give out for a moment.

Swarm's routing mesh (the service's virtual IP) is never used: it keeps sending new
connections to tasks that are stopping during an update, and a client sees those fail.
Draining stays the router's: a switch waits for the requests on the whole old service (the
logical URL), whichever of its tasks they went to.

Any other URL is one server and is used as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

__all__ = ["BENCH_SECONDS", "REFRESH_SECONDS", "Endpoints", "NoEndpoint", "is_service"]

TASKS_PREFIX = "tasks."
REFRESH_SECONDS = 1.0
BENCH_SECONDS = 3.0  # how long an address that failed to connect is left out
STALE_SECONDS = 10.0  # how long the last answer is used while DNS does not answer

Resolve = Callable[[str, int], Awaitable[list[str]]]


class NoEndpoint(Exception):
    """A service upstream with no task to send a request to."""


def is_service(url: str) -> bool:
    """Whether ``url`` names a Swarm service's tasks (``http://tasks.NAME:PORT``)."""
    return (urlsplit(url).hostname or "").startswith(TASKS_PREFIX)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in found})


class Endpoints:
    """Where each request to an upstream goes: the URL itself, or one task of a service."""

    def __init__(
        self,
        resolve: Resolve | None = None,
        *,
        refresh: float = REFRESH_SECONDS,
        bench: float = BENCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve or _getaddrinfo
        self._refresh = refresh
        self._bench = bench
        self._clock = clock
        self._answers: dict[str, tuple[float, tuple[str, ...]]] = {}  # URL → (when, bases)
        self._pending: dict[str, asyncio.Task[tuple[str, ...]]] = {}
        self._benched: dict[str, float] = {}  # base URL → until when it is left out
        self.in_flight: Counter[str] = Counter()  # by base URL (one task)

    async def pick(self, url: str, avoid: frozenset[str] = frozenset()) -> str:
        """The base URL to send a request for ``url`` to, other than those in ``avoid`` (the
        ones this request already failed on) while there is another. NoEndpoint when a
        service has no task."""
        if not is_service(url):
            return url
        bases = await self.bases(url)
        if not bases:
            host = urlsplit(url).hostname
            raise NoEndpoint(f"{host} names no running task (Swarm's DNS has no address for it)")
        now = self._clock()
        usable = [b for b in bases if b not in avoid and self._benched.get(b, 0.0) <= now]
        usable = usable or [b for b in bases if b not in avoid] or list(bases)
        fewest = min(self.in_flight[b] for b in usable)
        return random.choice([b for b in usable if self.in_flight[b] == fewest])

    async def usable(self, url: str, base: str) -> bool:
        """Whether ``base`` is one of ``url``'s tasks now and not left out for failing."""
        return base in await self.bases(url) and self._benched.get(base, 0.0) <= self._clock()

    def failed(self, base: str) -> None:
        """``base`` refused a connection or did not accept one in time: leave it out a while."""
        self._benched[base] = self._clock() + self._bench

    async def bases(self, url: str, *, fresh: bool = False) -> tuple[str, ...]:
        """The base URLs of ``url``'s tasks, as Swarm's DNS gave them lately (``fresh``: as
        it gives them now)."""
        answer = self._answers.get(url)
        age = self._clock() - answer[0] if answer is not None else math.inf
        if answer is not None and not fresh and age < self._refresh:
            return answer[1]
        task = self._pending.get(url)
        if task is None or task.done():
            task = asyncio.create_task(self._lookup(url))
            self._pending[url] = task
            task.add_done_callback(self._looked_up(url))
        if answer is not None and answer[1] and not fresh and age < STALE_SECONDS:
            return answer[1]  # the last answer (recent, not empty) while the next one comes
        return await asyncio.shield(task)

    def _looked_up(self, url: str) -> Callable[[asyncio.Task[tuple[str, ...]]], None]:
        def done(task: asyncio.Task[tuple[str, ...]]) -> None:
            if self._pending.get(url) is task:
                del self._pending[url]

        return done

    async def _lookup(self, url: str) -> tuple[str, ...]:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await self._resolve(parts.hostname or "", port)
        except (OSError, ValueError):  # ValueError: a name IDNA refuses (a label over 63)
            # No answer (the name is gone while every task restarts, or DNS is slow): the
            # last answer still holds for a while; a task that is gone is benched on use.
            last = self._answers.get(url)
            if last is not None and self._clock() - last[0] < STALE_SECONDS:
                return last[1]
            addresses = []
        bases = tuple(
            f"{parts.scheme}://{f'[{a}]' if ':' in a else a}:{port}" for a in sorted(addresses)
        )
        self._answers[url] = (self._clock(), bases)
        return bases

    def forget(self, keep: frozenset[str]) -> None:
        """Drop what is known of every upstream but those in ``keep`` (after a change)."""
        for url in list(self._answers):
            if url not in keep:
                del self._answers[url]
        now = self._clock()
        for base, until in list(self._benched.items()):
            if until <= now:
                del self._benched[base]

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
