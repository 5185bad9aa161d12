"""A canary's figures from a real Prometheus when its /metrics misses a scrape: one answer
slower than the scrape timeout mid-window is not a source down (the window is judged on the
scrapes around it), a /metrics that stopped answering is (no figures, the release pauses)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backends.canary.figures import figures_from_prometheus, window
from backends.errors import Unavailable
from backends.prometheus.prometheus_source import PrometheusSource
from backends.prometheus.queries import Scope, selector
from tests import services
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

SLOW = 3.0  # seconds a missed scrape's answer takes: beyond the 1 s scrape timeout (interval)


@dataclass
class Exporter:
    """A /metrics whose request counters grow by 10 (200) and 5 (500) at every scrape, and
    that can be told to answer the next scrape, or every one, too late."""

    scrapes: int = 0
    miss_next: bool = False
    down: bool = False
    missed_at: float = 0.0  # epoch seconds the missed scrape arrived
    answered_since_miss: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self) -> bytes:
        with self.lock:
            self.scrapes += 1
            n = self.scrapes
            slow = self.down or self.miss_next
            if self.miss_next:
                self.miss_next, self.missed_at, self.answered_since_miss = False, time.time(), 0
            elif not slow:
                self.answered_since_miss += 1
        if slow:
            time.sleep(SLOW)
        return (
            "# TYPE mlops_requests_total counter\n"
            f'mlops_requests_total{{status="200"}} {10 * n}\n'
            f'mlops_requests_total{{status="500"}} {5 * n}\n'
        ).encode()


@pytest.fixture
def exporter(prometheus: services.PrometheusServer) -> Iterator[tuple[Exporter, Scope]]:
    state = Exporter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state.body()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # Prometheus gave up on a late answer
                pass

        def log_message(self, *args: object) -> None:
            pass

    port = services.free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deployment = f"miss-{uuid.uuid4().hex[:8]}"
    labels = {"deployment": deployment, "version": "3", "role": "canary", "model": "iris"}
    prometheus.set_targets([{"targets": [f"127.0.0.1:{port}"], "labels": labels}])
    try:
        yield state, Scope(deployment=deployment, version="3", role="canary")
    finally:
        prometheus.set_targets([])
        server.shutdown()
        server.server_close()


def test_one_scrape_missed_mid_window_is_judged_on_the_scrapes_around_it(
    prometheus: services.PrometheusServer, exporter: tuple[Exporter, Scope]
) -> None:
    state, scope = exporter
    source = PrometheusSource(prometheus.url, timeout=10)
    up = selector("up", scope.matchers())

    def scraped(expression: str) -> float | None:
        answer = source.vector(expression)
        return answer[0][1] if answer else None

    try:
        eventually(lambda: (scraped(f"count_over_time({up}[30s])") or 0) >= 3, "three scrapes")
        figures, tries = None, []
        # On a busy host any scrape may also miss the 1 s timeout: a window whose last scrape
        # did too is not this case (it is the next one's), and the miss is made again.
        while figures is None and len(tries) < 5:
            state.miss_next = True
            eventually(lambda: not state.miss_next, "the missed scrape to start")
            eventually(lambda: state.answered_since_miss >= 3, "three answers after the miss")
            time.sleep(0.5)  # the last answer's samples are in
            seconds = round(time.time() - state.missed_at + 2.0)  # from a scrape before it
            # The window holds the miss (up 0), and answered scrapes before and after it.
            assert scraped(f"min_over_time({up}[{window(seconds)}])") == 0.0
            last = scraped(f"last_over_time({up}[{window(seconds)}])")
            tries.append(last)
            if last == 1.0:
                with contextlib.suppress(Unavailable):
                    figures = figures_from_prometheus(source.vector, scope, seconds, min_requests=5)
        assert figures is not None, f"no window judged; last scrapes {tries}"
        assert figures.requests is not None and figures.requests >= 10  # two answers or more
        assert figures.error_ratio == pytest.approx(1 / 3)

        # Stopped answering: every scrape too late. What it said before is not the window's.
        state.down = True
        eventually(lambda: scraped(f"last_over_time({up}[3s])") == 0.0, "a failed last scrape")
        with pytest.raises(Unavailable, match="at the end of the last"):
            figures_from_prometheus(source.vector, scope, seconds, min_requests=5)
    finally:
        source.close()
