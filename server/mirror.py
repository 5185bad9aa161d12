"""Shadow traffic: a copy of some prediction requests goes to a mirror upstream, whose answers
are compared with the ones the clients got and then thrown away.

The copy is sent in the background once the client has its answer, so a slow or dead mirror
never delays or fails a client. It is bounded: at most ``max_in_flight`` copies at a time (more
are dropped and counted), through a connection pool of its own so a stuck mirror cannot take
the connections the clients' requests need, within a deadline of its own.

Comparison, row by row over the ``predictions`` both answers carry (``/predict`` and
``/invocations`` alike): two numbers of which one is a JSON float (a regressor's) are compared
by their absolute difference; anything else (class labels, integers, strings, lists) by
equality. Figures:

- ``mlops_mirror_disagreement_ratio`` (gauge): of the last ``window`` compared rows, the
  fraction whose predictions differ (numbers: by more than 1e-9 relative);
- ``mlops_mirror_mean_absolute_difference`` (gauge): the mean absolute difference over the
  numeric rows of that window (0 while there are none);
- ``mlops_mirror_window_rows`` (gauge): how many rows the window holds (0 after a mirror change);
- ``mlops_mirror_rows_compared_total{kind="label"|"numeric"}``,
  ``mlops_mirror_rows_differing_total`` and ``mlops_mirror_absolute_difference_total``
  (counters): the same figures over any range, e.g.
  ``rate(mlops_mirror_rows_differing_total[10m]) / rate(mlops_mirror_rows_compared_total[10m])``;
- ``mlops_mirror_duration_seconds`` (histogram): the mirror's answer time;
- ``mlops_mirror_errors_total{cause}``: connect, timeout, disconnected, error, status (the
  mirror did not answer 200 where the client's upstream did), unreadable (no predictions list),
  mismatch (a different number of rows);
- ``mlops_mirror_dropped_total{reason="busy"}``: copies not sent, over the in-flight cap;
- the mirror's answers in ``mlops_router_requests_total{role="mirror"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

from server.routing import MIRROR, Mirror

log = logging.getLogger("server.router")
MIRRORED_PATHS = frozenset({"/predict", "/invocations"})


@dataclass(frozen=True)
class Copy:
    """One mirrored request and the answer the client got to it."""

    mirror: Mirror
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    primary_status: int
    primary_answer: bytes | None  # None: too large to keep, or not readable
    primary_encoding: str = ""


@dataclass(frozen=True)
class RowComparison:
    differs: bool
    absolute_difference: float | None  # None for rows compared by equality


class Mirroring:
    """Sends copies to the mirror in the background and keeps the comparison's figures."""

    def __init__(
        self,
        registry: CollectorRegistry,
        requests: PromCounter,
        *,
        timeout: float = 10.0,
        max_in_flight: int = 16,
        window: int = 1000,
    ) -> None:
        self.requests = requests
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.rows: deque[RowComparison] = deque(maxlen=window)
        self._tasks: set[asyncio.Task[None]] = set()
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(
                max_connections=max_in_flight,
                max_keepalive_connections=max_in_flight,
                keepalive_expiry=30.0,
            ),
        )
        self.ratio = Gauge(
            "mlops_mirror_disagreement_ratio",
            "Of the last compared rows, the fraction whose mirror prediction differs.",
            registry=registry,
        )
        self.mean_difference = Gauge(
            "mlops_mirror_mean_absolute_difference",
            "Over the last compared numeric rows, the mean absolute prediction difference.",
            registry=registry,
        )
        self.window_rows = Gauge(
            "mlops_mirror_window_rows",
            "Rows in the window the disagreement figures are computed over.",
            registry=registry,
        )
        self.compared = PromCounter(
            "mlops_mirror_rows_compared",
            "Rows whose mirror prediction was compared with the client's.",
            ["kind"],
            registry=registry,
        )
        self.differing = PromCounter(
            "mlops_mirror_rows_differing",
            "Compared rows whose mirror prediction differs.",
            registry=registry,
        )
        self.difference = PromCounter(
            "mlops_mirror_absolute_difference",
            "Sum of the absolute differences over compared numeric rows.",
            registry=registry,
        )
        self.duration = Histogram(
            "mlops_mirror_duration_seconds",
            "How long the mirror took to answer a copy.",
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.errors = PromCounter(
            "mlops_mirror_errors",
            "Copies the mirror failed, by cause.",
            ["cause"],
            registry=registry,
        )
        self.dropped = PromCounter(
            "mlops_mirror_dropped", "Copies not sent, by reason.", ["reason"], registry=registry
        )

    def reserve(self) -> bool:
        """Take a place for a copy (held while the client's request runs), or count it dropped."""
        if self.in_flight >= self.max_in_flight:
            self.dropped.labels(reason="busy").inc()
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        """Give back a place taken for a copy that will not be sent."""
        self.in_flight -= 1

    def send(self, copy: Copy) -> None:
        """Send a copy in the background, in the place reserved for it."""
        task = asyncio.get_running_loop().create_task(self._shadow(copy))
        # The loop keeps only weak references to tasks: hold them until they are done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def reset(self) -> None:
        """Start the window again: another mirror's answers are another comparison."""
        self.rows.clear()
        self._publish()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    # ------------------------------------------------------------------ the copy

    async def _shadow(self, copy: Copy) -> None:
        upstream = copy.mirror.upstream
        started = time.perf_counter()
        try:
            response = await self._client.post(
                upstream.url + copy.path, content=copy.body, headers=copy.headers
            )
        except httpx.HTTPError as exc:
            self._failed(upstream.url, _cause(exc))
            return
        except Exception:  # a copy must never take the router down
            log.exception("mirror copy failed")
            self._failed(upstream.url, "error")
            return
        finally:
            self.in_flight -= 1
        self.duration.observe(time.perf_counter() - started)
        self.requests.labels(
            version=upstream.version, role=MIRROR, status=str(response.status_code)
        ).inc()
        if copy.primary_status != 200 or copy.primary_answer is None:
            return  # nothing to compare with
        if response.status_code != 200:
            self._failed(upstream.url, "status")
            return
        primary = _predictions(copy.primary_answer, copy.primary_encoding)
        if primary is None:
            return  # the client's answer is not one we can read: not the mirror's fault
        shadow = _predictions(response.content, "")
        if shadow is None:
            self._failed(upstream.url, "unreadable")
        elif len(shadow) != len(primary):
            self._failed(upstream.url, "mismatch")
        else:
            self._record([compare(a, b) for a, b in zip(primary, shadow, strict=True)])

    def _failed(self, url: str, cause: str) -> None:
        self.errors.labels(cause=cause).inc()
        log.debug("mirror %s: %s", url, cause)

    def _record(self, rows: list[RowComparison]) -> None:
        numeric = [r.absolute_difference for r in rows if r.absolute_difference is not None]
        if numeric:
            self.compared.labels(kind="numeric").inc(len(numeric))
            self.difference.inc(sum(numeric))
        if len(rows) > len(numeric):
            self.compared.labels(kind="label").inc(len(rows) - len(numeric))
        self.differing.inc(sum(r.differs for r in rows))
        self.rows.extend(rows)
        self._publish()

    def _publish(self) -> None:
        rows = self.rows
        # Recounted over the window each time (at most `window` rows): no running sum to drift.
        self.window_rows.set(len(rows))
        self.ratio.set(sum(r.differs for r in rows) / len(rows) if rows else 0.0)
        numeric = [r.absolute_difference for r in rows if r.absolute_difference is not None]
        self.mean_difference.set(sum(numeric) / len(numeric) if numeric else 0.0)


def compare(primary: Any, shadow: Any) -> RowComparison:
    """One row: by absolute difference when it is a regressor's number, else by equality."""
    if (
        _is_number(primary)
        and _is_number(shadow)
        and (isinstance(primary, float) or isinstance(shadow, float))
    ):
        difference = abs(float(primary) - float(shadow))
        if math.isfinite(difference):
            scale = max(1.0, abs(float(primary)), abs(float(shadow)))
            return RowComparison(difference > 1e-9 * scale, difference)
    return RowComparison(primary != shadow, None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _predictions(answer: bytes, encoding: str) -> list[Any] | None:
    try:
        if encoding in ("gzip", "x-gzip"):
            answer = zlib.decompress(answer, 16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            answer = zlib.decompress(answer)
        elif encoding not in ("", "identity"):
            return None
        doc = json.loads(answer)
    except (ValueError, zlib.error):
        return None
    predictions = doc.get("predictions") if isinstance(doc, dict) else None
    return predictions if isinstance(predictions, list) else None


def _cause(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "disconnected"
    return "error"
