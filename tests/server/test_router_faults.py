"""The router (`python -m server.router`) under faults, in front of real model servers: the
model server killed under load, the router restarted, keep-alive gaps, hostile bodies, SIGTERM
while a request is in flight. Counted outcomes, never a bare 500."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.server.conftest import FEATURES, ROOT, iris_frame

ROW = [5.1, 3.5, 1.4, 0.2]
TOKEN = "r0uter-t0ken"


@dataclass
class Router:
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    state: Path


def start_router(upstream: str, tmp: Path, port: int | None = None, **env: str) -> Router:
    port = port or services.free_port()
    log = tmp / f"router-{port}-{time.monotonic_ns()}.log"
    state = tmp / "router-state"
    token = tmp / "token"
    token.write_text(TOKEN)
    cmd = [sys.executable, "-m", "server.router", "--listen", f"127.0.0.1:{port}"]
    cmd += ["--upstream", upstream, "--state-dir", str(state), "--version", "1"]
    proc = services._spawn(cmd, log, ROOT, MLOPS_ADMIN_TOKEN_FILE=str(token), **env)
    url = f"http://127.0.0.1:{port}"
    services._wait_http(f"{url}/-/router/health", proc, log, 120, "router")
    services.remember_log(f"router :{port}", log)
    return Router(url, port, proc, log, state)


@pytest.fixture
def model(iris_model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    url, proc = services.start_model_server(str(iris_model_dir), tmp_path / "model.log")
    try:
        yield url, proc
    finally:
        services._stop(proc)


@pytest.fixture
def router(model: tuple[str, subprocess.Popen[bytes]], tmp_path: Path) -> Iterator[Router]:
    r = start_router(model[0], tmp_path, MLOPS_BODY_TIMEOUT="4")
    try:
        yield r
    finally:
        services._stop(r.proc)


def switch(router: Router, upstream: str, version: str) -> httpx.Response:
    return httpx.put(
        f"{router.url}/-/router/upstream",
        json={"upstream": upstream, "version": version, "drain_timeout": 30},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    )


def test_a_prediction_goes_through_with_a_request_id(router: Router) -> None:
    answer = httpx.post(f"{router.url}/predict", json={"data": [ROW]})
    assert answer.status_code == 200 and answer.json()["predictions"]
    # The router made one up, and the model server answered with that one.
    made = answer.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made) and answer.json()["request_id"] == made
    mine = httpx.post(
        f"{router.url}/predict", json={"data": [ROW]}, headers={"X-Request-Id": "r-1"}
    )
    assert mine.status_code == 200
    assert mine.headers["x-request-id"] == mine.json()["request_id"] == "r-1"
    # One the router cannot carry is replaced, not passed on and not refused.
    odd = httpx.post(
        f"{router.url}/predict", json={"data": [ROW]}, headers={"X-Request-Id": "x" * 500}
    )
    assert odd.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", odd.json()["request_id"])
    assert odd.headers["x-request-id"] == odd.json()["request_id"]
    # The router's own refusals name the request as well.
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as raw:
        raw.sendall(
            b"POST /predict HTTP/1.1\r\nHost: t\r\nX-Request-Id: r-2\r\n"
            b"Content-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n"
        )
        head = raw.recv(65536).split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 413") and "x-request-id: r-2" in head, head
    metrics = httpx.get(f"{router.url}/metrics").text
    assert "mlops_requests_total" in metrics  # the model server's
    assert 'mlops_router_requests_total{role="stable",status="200",version="1"}' in metrics
    # The standard collectors of the model server's process, beside ours, and each family
    # once: Prometheus refuses a whole scrape that declares a family twice.
    for standard in ("process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert f"\n{standard}" in metrics, standard
    declared = [line.split()[2] for line in metrics.splitlines() if line.startswith("# TYPE ")]
    assert len(declared) == len(set(declared)), sorted(declared)


def test_a_killed_model_server_gets_json_errors_never_a_bare_500(
    router: Router, model: tuple[str, subprocess.Popen[bytes]]
) -> None:
    statuses: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    r = http.post(f"{router.url}/predict", json={"data": [ROW] * 20})
                    statuses.append((r.status_code, r.headers.get("content-type", "")))
                except httpx.HTTPError as exc:
                    statuses.append((0, repr(exc)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    model[1].send_signal(signal.SIGKILL)  # the container dies under load
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    failures = [s for s in statuses if s[0] != 200]
    assert failures, "the upstream was killed: some requests must have failed"
    assert {code for code, _ in failures} <= {502, 503, 504}, failures[:5]
    assert all(kind.startswith("application/json") for _, kind in failures), failures[:5]
    answer = httpx.post(f"{router.url}/predict", json={"data": [ROW]})
    assert answer.status_code in (502, 503) and answer.json()["error"]["type"].startswith(
        "upstream_"
    )
    causes = httpx.get(f"{router.url}/-/router/metrics").text
    assert "mlops_router_upstream_errors_total" in causes


@pytest.mark.slow  # waits out real timeouts of real processes: seconds
def test_a_restarted_router_comes_back_on_the_upstream_it_was_switched_to(
    router: Router,
    model: tuple[str, subprocess.Popen[bytes]],
    iris_model_dir: Path,
    tmp_path: Path,
) -> None:
    # A second model server (the "new version"), then a switch to it.
    other_url, other = services.start_model_server(str(iris_model_dir), tmp_path / "other.log")
    try:
        assert switch(router, other_url, "2").status_code == 200
        router.proc.send_signal(signal.SIGKILL)  # the router (or its host) goes down
        router.proc.wait(30)
        # Started again exactly as the container would be: with its original --upstream.
        again = start_router(model[0], tmp_path, port=router.port)
        try:
            health = httpx.get(f"{again.url}/-/router/health").json()
            assert health["upstream"] == other_url and health["version"] == "2"
            assert httpx.post(f"{again.url}/predict", json={"data": [ROW]}).status_code == 200
        finally:
            services._stop(again.proc)
    finally:
        services._stop(other)


@pytest.mark.slow  # waits out real timeouts of real processes: seconds
def test_kept_alive_clients_pausing_around_the_servers_idle_timeout_never_fail(
    router: Router,
) -> None:
    failures = 0
    with httpx.Client(timeout=30) as http:
        for pause in (4.5, 5.0, 5.5, 6.0, 4.9, 5.1):
            r = http.post(f"{router.url}/predict", json={"data": [ROW]})
            failures += r.status_code != 200
            time.sleep(pause)
        failures += http.post(f"{router.url}/predict", json={"data": [ROW]}).status_code != 200
    assert failures == 0


def test_hostile_bodies_are_refused_at_the_router_readably(router: Router) -> None:
    big = b'{"data": [' + b"[1,2,3,4]," * 700_000 + b"[1,2,3,4]]}"  # 7 MB
    answer = httpx.post(
        f"{router.url}/predict",
        content=big,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 413 and answer.json()["error"]["type"] == "payload_too_large"

    s = socket.create_connection(("127.0.0.1", router.port), timeout=60)
    s.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n{")
    started = time.monotonic()
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    s.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.monotonic() - started < 4 + 20


def test_sigterm_with_a_request_in_flight_drains_it(router: Router) -> None:
    rows = iris_frame()[FEATURES].values.tolist() * 200  # 30,000 rows: it takes a while
    outcome: dict[str, httpx.Response] = {}

    def big() -> None:
        outcome["r"] = httpx.post(f"{router.url}/predict", json={"data": rows}, timeout=120)

    def in_flight() -> int:
        state = httpx.get(f"{router.url}/-/router/state", timeout=10).json()
        return sum(state["in_flight"].values())

    # SIGTERM once the router has the request in flight (not after a fixed pause, which a
    # loaded machine outlasts before the request even connects: then it is refused, not
    # drained). A request answered before a look at the state saw it (a poll can take longer
    # than the prediction on a busy box) proves nothing: another is sent.
    for _ in range(10):
        worker = threading.Thread(target=big)
        worker.start()
        deadline = time.monotonic() + 60
        while worker.is_alive() and not in_flight():
            assert time.monotonic() < deadline, "the request never got in flight"
            time.sleep(0.02)
        if worker.is_alive():
            break
        worker.join()
    else:
        raise AssertionError("every request was answered before it was seen in flight")
    router.proc.send_signal(signal.SIGTERM)
    worker.join(120)
    assert router.proc.wait(60) in (0, -signal.SIGTERM)
    assert outcome["r"].status_code == 200 and len(outcome["r"].json()["predictions"]) == len(rows)


async def test_the_admin_routes_and_docs_answer_loopback_clients_only() -> None:
    from server.router import Router as Proxy

    proxy = Proxy("http://127.0.0.1:9", TOKEN)
    remote = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=proxy, client=("10.1.2.3", 4321)), base_url="http://r"
    )
    local = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=proxy, client=("127.0.0.1", 4321)), base_url="http://r"
    )
    async with remote, local:
        for path in ("/-/router/upstream", "/-/router/health", "/docs", "/admin/reload"):
            assert (await remote.get(path)).status_code == 404, path
        assert (await local.get("/-/router/health")).status_code == 200
        denied = await local.put("/-/router/upstream", json={"upstream": "http://x"})
        assert denied.status_code == 401
        bad = await local.put(
            "/-/router/upstream",
            json={"upstream": "http://x"},
            headers={"Authorization": b"Bearer \xc3\xa9t\xc3\xa9\xff"},
        )
        assert bad.status_code == 403
        # Nothing listens on port 9: a JSON 503 naming the cause, not a bare 500.
        down = await local.post("/predict", json={"data": [ROW]})
        assert down.status_code == 503 and down.json()["error"]["type"] == "upstream_unreachable"
