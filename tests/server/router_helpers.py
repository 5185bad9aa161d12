"""What the router's canary and mirror tests share: fake upstreams as real processes, the admin
calls, reading the router's figures, and waiting for a condition instead of a clock."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests import services
from tests.server.conftest import ROOT
from tests.server.test_router_faults import TOKEN, Router

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Fake:
    url: str
    name: str
    proc: subprocess.Popen[bytes]

    def stats(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/stats", timeout=30).json())


def start_fake(
    tmp: Path, name: str, *flags: str, host: str = "127.0.0.1", port: int | None = None
) -> Fake:
    """`python -m tests.server.fake_upstream` on ``host`` and a free port (or ``port``),
    answering as ``name``."""
    port = port or services.free_port()
    log = tmp / f"fake-{name}-{host}-{port}.log"
    cmd = [sys.executable, "-m", "tests.server.fake_upstream", "--port", str(port)]
    proc = services._spawn([*cmd, "--host", host, "--name", name, *flags], log, ROOT)
    url = f"http://{host}:{port}"
    services._wait_http(f"{url}/ready", proc, log, 120, f"fake upstream {name}")
    services.remember_log(f"fake upstream {name} :{port}", log)
    return Fake(url, name, proc)


def change(router: Router, method: str, path: str, body: Any = None) -> httpx.Response:
    """An admin call to the router, with its token."""
    return httpx.request(
        method, f"{router.url}/-/router/{path}", json=body, headers=AUTH, timeout=120
    )


def state(router: Router) -> dict[str, Any]:
    return dict(httpx.get(f"{router.url}/-/router/state", timeout=30).json())


class Reachable(Protocol):
    url: str


def metric(router: Reachable, name: str, **labels: str) -> float:
    """The sum of the router's samples called ``name`` that carry ``labels`` (0 when none):
    any router this test reaches at ``router.url``."""
    text = httpx.get(f"{router.url}/-/router/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 90) -> None:
    """Until ``condition()`` holds; the deadline only stops a hang, it measures nothing."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
