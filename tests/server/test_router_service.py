"""The router in front of a Swarm service's tasks (``http://tasks.NAME:PORT``, server.upstreams):
requests spread over the tasks, a task killed under load fails no request, a switch to a
service that has no task yet is refused and changes nothing, and a switch between services
drains the old one whichever task its requests went to.

The tasks are fake model servers on other loopback addresses (127.0.0.2, 127.0.0.3, ...) on
one port, as a service's tasks are on one port at several addresses; what Swarm's DNS would
answer for ``tasks.NAME`` is a table the test holds. The router runs in this process (uvicorn
in a thread) so that its resolver can be that table; tests/integration/test_swarm.py runs the
same path on a real swarm.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from server.router import Router
from server.routing import Canary, Upstream
from server.upstreams import Endpoints, NoEndpoint
from tests import services
from tests.server.router_helpers import Fake, metric, start_fake, wait_for

TOKEN = "s3rvice-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROW = {"inputs": [[7, 1.0, 1.0, 1.0]]}


@dataclass
class Dns:
    """What Swarm's DNS answers: a name → the addresses of its running tasks."""

    names: dict[str, list[str]] = field(default_factory=dict)
    asked: int = 0

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked += 1
        if host not in self.names:
            raise OSError(f"{host}: name not known")
        return list(self.names[host])


@dataclass
class Served:
    url: str
    router: Router
    dns: Dns


@pytest.fixture
def port() -> int:
    return services.free_port()


@pytest.fixture
def dns() -> Dns:
    return Dns()


@pytest.fixture
def served(dns: Dns, port: int) -> Iterator[Served]:
    """A router on a free port whose upstream is ``http://tasks.v1:PORT``."""
    router = Router(f"http://tasks.v1:{port}", TOKEN, max_in_flight=4096)
    router.endpoints = Endpoints(dns.resolve, refresh=0.2)
    listen = services.free_port()
    server = uvicorn.Server(
        uvicorn.Config(router, host="127.0.0.1", port=listen, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listen}"
    wait_for("the router", lambda: server.started, timeout=60)
    yield Served(url, router, dns)
    server.should_exit = True
    thread.join(timeout=30)


def tasks(tmp: Path, service: str, port: int, addresses: list[str], *flags: str) -> list[Fake]:
    return [start_fake(tmp, f"{service}@{a}", *flags, host=a, port=port) for a in addresses]


def predict(url: str, client: httpx.Client) -> tuple[int, str]:
    response = client.post(f"{url}/invocations", json=ROW, timeout=60)
    return response.status_code, response.headers.get("x-upstream", "")


def load(url: str, until: threading.Event, workers: int = 8) -> list[tuple[int, str]]:
    """Predictions from ``workers`` kept-alive clients until ``until`` is set: every answer."""

    def client_loop() -> list[tuple[int, str]]:
        out = []
        with httpx.Client() as client:
            while not until.is_set():
                out.append(predict(url, client))
        return out

    with ThreadPoolExecutor(workers) as pool:
        return [a for part in pool.map(lambda _: client_loop(), range(workers)) for a in part]


def load_for(url: str, answers: int, workers: int = 6) -> list[tuple[int, str]]:
    """Predictions until about ``answers`` came back (however long that takes here)."""
    done = threading.Event()
    counted = [0]

    def client_loop() -> list[tuple[int, str]]:
        out = []
        with httpx.Client() as client:
            while not done.is_set():
                out.append(predict(url, client))
                counted[0] += 1
                if counted[0] >= answers:
                    done.set()
        return out

    with ThreadPoolExecutor(workers) as pool:
        return [a for part in pool.map(lambda _: client_loop(), range(workers)) for a in part]


def stop(fakes: list[Fake]) -> None:
    for fake in fakes:
        fake.proc.kill()
        fake.proc.wait(timeout=30)


def test_requests_spread_over_the_tasks_swarm_dns_names(
    served: Served, port: int, tmp_path: Path
) -> None:
    fakes = tasks(tmp_path, "v1", port, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    served.dns.names["tasks.v1"] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    try:
        answers = load_for(served.url, 900)
        assert answers and {status for status, _ in answers} == {200}
        by_task = {
            name: sum(1 for _, who in answers if who == name) for name in {f.name for f in fakes}
        }
        print(f"{len(answers)} predictions over three tasks: {by_task}")
        assert all(n > len(answers) / 10 for n in by_task.values()), by_task
        assert served.dns.asked >= 2  # looked up again as time went, not once for good
    finally:
        stop(fakes)


def test_metrics_are_every_tasks_labelled_by_task_then_the_routers_own(
    served: Served, port: int, tmp_path: Path
) -> None:
    """One scrape target for the deployment, as on one engine: the router's /metrics holds
    each task's samples (a task counts only what it answered) with a ``task`` label, each
    family once, then the router's own."""
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    fakes = tasks(tmp_path, "v1", port, addresses)
    served.dns.names["tasks.v1"] = addresses

    def scraped() -> dict[str, Any]:
        response = httpx.get(f"{served.url}/metrics", timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=")
        typed = Counter(x for x in response.text.splitlines() if x.startswith("# TYPE "))
        assert set(typed.values()) == {1}, typed  # the format allows a family once
        return {f.name: f for f in text_string_to_metric_families(response.text)}

    try:
        load_for(served.url, 30)
        families = scraped()
        info = families["fake_upstream_info"].samples
        assert sorted(s.labels["task"] for s in info) == [f"{a}:{port}" for a in addresses]
        assert {s.labels["name"] for s in info} == {f.name for f in fakes}
        assert sum(s.value for s in families["mlops_router_requests"].samples) >= 30
        head = httpx.head(f"{served.url}/metrics", timeout=30)
        assert head.status_code == 200 and head.content == b""
        # Only reads are merged: anything else goes to one task, as any request (405 there).
        assert httpx.post(f"{served.url}/metrics", timeout=30).status_code == 405
        # A task that takes a connection and never answers costs its own samples only, within
        # the time Prometheus says it waits for the scrape.
        with socket.create_server(("127.0.0.5", port)) as hung:
            served.dns.names["tasks.v1"] = [*addresses, "127.0.0.5"]
            time.sleep(0.5)  # the router looks the name up again
            response = httpx.get(  # within the client's 30 s: not the router's 60 s default
                f"{served.url}/metrics",
                # 5 s: each answering task has ~4 of them, enough on a loaded box (2 s left
                # 1.6 s, and a slow fake task dropped out of a correct answer).
                headers={"X-Prometheus-Scrape-Timeout-Seconds": "5"},
                timeout=30,
            )
            assert response.status_code == 200
            info = {
                s.labels["task"]
                for f in text_string_to_metric_families(response.text)
                for s in f.samples
                if s.name == "fake_upstream_info"
            }
            assert info == {f"{a}:{port}" for a in addresses}, hung
        served.dns.names["tasks.v1"] = addresses
        # A task that stops answering costs its own samples only ...
        stop(fakes[:1])
        info = scraped()["fake_upstream_info"].samples
        assert sorted(s.labels["task"] for s in info) == [f"{a}:{port}" for a in addresses[1:]]
        # ... and with none answering the scrape fails, as a single server's that is down.
        stop(fakes[1:])
        response = httpx.get(f"{served.url}/metrics", timeout=30)
        assert response.status_code == 503
        assert "tasks.v1" in response.json()["error"]["message"]
    finally:
        stop(fakes)


def test_labels_go_to_the_task_that_made_their_predictions(
    served: Served, port: int, tmp_path: Path
) -> None:
    """A task judges a label only for a prediction it made (its own window): the router
    remembers which task answered each prediction and sends each label there — a list spanning
    tasks is split and its reports merged in the client's order."""
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    fakes = tasks(tmp_path, "v1", port, addresses)
    served.dns.names["tasks.v1"] = addresses

    def labels(ids: list[str]) -> list[dict[str, Any]]:
        return [{"request_id": rid, "index": 0, "truth": 1} for rid in ids]

    try:
        made: dict[str, str] = {}  # request id -> the task that answered it
        with httpx.Client() as client:
            for i in range(90):
                rid = f"rid-{i}"
                response = client.post(
                    f"{served.url}/invocations", json=ROW, headers={"X-Request-Id": rid}
                )
                made[rid] = response.headers["x-upstream"]
        assert len(set(made.values())) == 3, made
        response = httpx.post(f"{served.url}/feedback", json=labels([*made, "never-made"]))
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["request_id"] for r in results] == [*made, "never-made"]
        for result in results[:-1]:
            assert result["outcome"] == "accepted", result
            assert result["judged_by"] == made[result["request_id"]]
        assert results[-1]["outcome"] == "not_found"
        rid, task = next(iter(made.items()))  # a single label, as it came
        one = httpx.post(f"{served.url}/feedback", json=labels([rid])[0]).json()
        assert one["results"][0]["judged_by"] == task
        # A task gone since: its labels find no prediction (not an error): another says so.
        stop(fakes[:1])
        served.dns.names["tasks.v1"] = addresses[1:]
        theirs = [rid for rid, who in made.items() if who == fakes[0].name]
        response = httpx.post(f"{served.url}/feedback", json=labels(theirs))
        assert response.status_code == 200, response.text
        assert {r["outcome"] for r in response.json()["results"]} == {"not_found"}
    finally:
        stop(fakes)


def test_a_task_killed_under_load_fails_no_request(
    served: Served, port: int, tmp_path: Path
) -> None:
    # Each prediction takes 0.2 s, so the task killed has several in flight when it goes.
    fakes = tasks(tmp_path, "v1", port, ["127.0.0.2", "127.0.0.3"], "--delay", "0.2")
    served.dns.names["tasks.v1"] = ["127.0.0.2", "127.0.0.3"]
    until = threading.Event()
    try:
        result: list[list[tuple[int, str]]] = []
        worker = threading.Thread(target=lambda: result.append(load(served.url, until, 16)))
        worker.start()
        wait_for("traffic on both tasks", lambda: all(f.stats()["predictions"] > 20 for f in fakes))
        # Killed mid-request (SIGKILL: connections reset, nothing drained), and still named by
        # the DNS for a moment, as Swarm's is until it notices the task is gone.
        stop(fakes[:1])
        time.sleep(0.5)
        served.dns.names["tasks.v1"] = ["127.0.0.3"]
        after_kill = fakes[1].stats()["predictions"]
        wait_for(
            "the survivor to answer on", lambda: fakes[1].stats()["predictions"] > after_kill + 50
        )
        until.set()
        worker.join(timeout=120)
        answers = result[0]
        failed = [a for a in answers if a[0] != 200]
        retried = metric(served, "mlops_router_retries_total")
        print(f"{len(answers)} predictions, {len(failed)} failed, {retried:.0f} sent again")
        assert not failed, failed[:5]
        # The killed task's requests in flight went to the survivor instead of failing.
        assert retried >= 1
    finally:
        until.set()
        stop(fakes[1:])


def test_a_switch_to_a_service_with_no_task_changes_nothing(
    served: Served, port: int, tmp_path: Path
) -> None:
    fakes = tasks(tmp_path, "v1", port, ["127.0.0.2"])
    served.dns.names["tasks.v1"] = ["127.0.0.2"]
    try:
        refused = httpx.put(
            f"{served.url}/-/router/upstream",
            json={"upstream": f"http://tasks.v2:{port}", "version": "2"},
            headers=AUTH,
            timeout=60,
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["type"] == "upstream_unresolved"
        assert "tasks.v2" in refused.json()["error"]["message"]
        assert served.router.upstream == f"http://tasks.v1:{port}"
        with httpx.Client() as client:
            assert predict(served.url, client) == (200, fakes[0].name)
    finally:
        stop(fakes)


def test_a_switch_between_services_drains_the_old_one_on_every_task(
    served: Served, port: int, tmp_path: Path
) -> None:
    old = tasks(tmp_path, "v1", port, ["127.0.0.2", "127.0.0.3"])
    new = tasks(tmp_path, "v2", port, ["127.0.0.4", "127.0.0.5"])
    served.dns.names.update(
        {"tasks.v1": ["127.0.0.2", "127.0.0.3"], "tasks.v2": ["127.0.0.4", "127.0.0.5"]}
    )
    try:
        with ThreadPoolExecutor(4) as pool:
            slow = [
                pool.submit(httpx.get, f"{served.url}/slow?seconds=12", timeout=60)
                for _ in range(4)
            ]
            # All four on the old tasks (some on each) before the switch.
            wait_for(
                "the slow requests on both old tasks",
                lambda: [f.stats()["in_progress"] for f in old] in ([1, 3], [2, 2], [3, 1]),
            )
            switched = httpx.put(
                f"{served.url}/-/router/upstream",
                json={"upstream": f"http://tasks.v2:{port}", "version": "2"},
                headers=AUTH,
                timeout=60,
            )
            # It answers once the old service has nothing in flight, on any of its tasks: the
            # slow requests have all finished by then.
            assert switched.status_code == 200 and switched.json()["drained"] is True
            assert sum(f.stats()["finished"] for f in old) == 4
            assert sum(f.stats()["in_progress"] for f in old) == 0
            assert all(r.result().status_code == 200 for r in slow)
        with httpx.Client() as client:
            whos = {predict(served.url, client)[1] for _ in range(20)}
        assert whos <= {f.name for f in new} and whos
    finally:
        stop(old + new)


# ---------------------------------------------------------------------- the resolver alone


def test_the_task_with_fewest_requests_in_flight_gets_the_next_one() -> None:
    dns = Dns({"tasks.m": ["10.0.0.1", "10.0.0.2"]})
    endpoints = Endpoints(dns.resolve)

    async def go() -> None:
        endpoints.in_flight["http://10.0.0.1:8080"] = 3
        for _ in range(10):
            assert await endpoints.pick("http://tasks.m:8080") == "http://10.0.0.2:8080"
        # One that failed to connect is left out, while there is another.
        endpoints.failed("http://10.0.0.2:8080")
        assert await endpoints.pick("http://tasks.m:8080") == "http://10.0.0.1:8080"
        # This request's own failures are avoided too; all gone, the least bad is tried.
        assert (
            await endpoints.pick("http://tasks.m:8080", frozenset({"http://10.0.0.1:8080"}))
            == "http://10.0.0.2:8080"
        )
        # A single server is itself.
        assert await endpoints.pick("http://127.0.0.1:9000") == "http://127.0.0.1:9000"

    asyncio.run(go())


def test_a_dns_that_stops_answering_keeps_the_last_answer_a_while_then_none() -> None:
    now = [0.0]
    dns = Dns({"tasks.m": ["10.0.0.1"]})
    endpoints = Endpoints(dns.resolve, refresh=1.0, clock=lambda: now[0])

    async def go() -> None:
        assert await endpoints.bases("http://tasks.m:8080") == ("http://10.0.0.1:8080",)
        del dns.names["tasks.m"]
        now[0] = 5.0  # stale: served while DNS is asked again, which does not answer
        assert await endpoints.bases("http://tasks.m:8080") == ("http://10.0.0.1:8080",)
        await asyncio.sleep(0.01)
        assert await endpoints.bases("http://tasks.m:8080") == ("http://10.0.0.1:8080",)
        # Past STALE_SECONDS the old answer is not used: the lookup is waited for.
        now[0] = 30.0
        assert await endpoints.bases("http://tasks.m:8080") == ()
        with pytest.raises(NoEndpoint, match=r"tasks\.m names no running task"):
            await endpoints.pick("http://tasks.m:8080")
        # An empty answer is never served stale: tasks that appear are seen at once.
        dns.names["tasks.m"] = ["10.0.0.2"]
        now[0] = 31.5
        assert await endpoints.bases("http://tasks.m:8080") == ("http://10.0.0.2:8080",)
        # A fresh lookup (a switch's) asks now, whatever was cached a moment ago.
        dns.names["tasks.m"] = ["10.0.0.3"]
        assert await endpoints.bases("http://tasks.m:8080", fresh=True) == ("http://10.0.0.3:8080",)

    asyncio.run(go())


def test_an_unresolvable_name_is_no_task_not_a_crash() -> None:
    async def idna(host: str, port: int) -> list[str]:
        raise UnicodeError("label too long")

    async def go() -> None:
        with pytest.raises(NoEndpoint):
            await Endpoints(idna).pick("http://tasks.x:8080")

    asyncio.run(go())


# ---------------------------------------------------------------------- single servers, remote


def test_a_single_server_that_hangs_is_a_504_in_the_routers_time(tmp_path: Path) -> None:
    fake = start_fake(tmp_path, "hangs")
    router = Router(fake.url, TOKEN, timeout=0.5)
    try:

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=router)
            async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
                return await client.get("/slow?seconds=5", timeout=30)

        answer = asyncio.run(go())
        assert answer.status_code == 504, answer.text
        assert answer.json()["error"]["type"] == "upstream_timeout"
    finally:
        stop([fake])


@pytest.mark.parametrize("remote_admin", [False, True])
def test_a_remote_client_reads_the_admin_routes_only_with_the_token(remote_admin: bool) -> None:
    router = Router("http://127.0.0.1:9", TOKEN, remote_admin=remote_admin)

    async def go_to(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        transport = httpx.ASGITransport(app=router, client=("192.0.2.50", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            return await client.get(path, headers=headers or {})

    async def go(headers: dict[str, str]) -> httpx.Response:
        return await go_to("/-/router/state", headers)

    bare, with_token = asyncio.run(go({})), asyncio.run(go(AUTH))
    router_health = asyncio.run(go_to("/-/router/health"))
    # Widened, the liveness probe answers anyone (it says nothing secret); else loopback only.
    assert router_health.status_code == (200 if remote_admin else 404)
    if not remote_admin:
        assert (bare.status_code, with_token.status_code) == (404, 404)
    else:
        assert bare.status_code == 401 and bare.json()["error"]["type"] == "unauthorized"
        assert with_token.status_code == 200 and "stable" in with_token.json()


def test_past_the_buffer_budget_a_body_streams_through_and_nothing_stays_held(
    served: Served, port: int, tmp_path: Path
) -> None:
    fakes = tasks(tmp_path, "v1", port, ["127.0.0.2"])
    served.dns.names["tasks.v1"] = ["127.0.0.2"]
    try:
        with httpx.Client() as client:
            assert predict(served.url, client)[0] == 200  # held whole: within the budget
            served.router.buffer_budget = 10  # a body of ~40 bytes no longer fits
            assert predict(served.url, client) == (200, fakes[0].name)
            too_big = client.post(f"{served.url}/invocations", content=b"x" * (6 * 1024 * 1024))
            assert too_big.status_code == 413
        assert served.router.buffered == 0
    finally:
        stop(fakes)


def test_the_canarys_own_metrics_are_its_tasks_together_and_need_no_token(
    served: Served, port: int, tmp_path: Path
) -> None:
    """A canary on a swarm cannot be scraped from outside its overlay: the router answers its
    tasks' /metrics together on /-/router/canary/metrics, without the router's own figures
    (they are the stable's target's)."""
    none = httpx.get(f"{served.url}/-/router/canary/metrics", timeout=30)
    assert none.status_code == 404 and none.json()["error"]["type"] == "not_found"
    stable = tasks(tmp_path, "v1", port, ["127.0.0.2"])
    served.dns.names["tasks.v1"] = ["127.0.0.2"]
    canaries = tasks(tmp_path, "v2", port, ["127.0.0.5", "127.0.0.6"])
    served.dns.names["tasks.v2"] = ["127.0.0.5", "127.0.0.6"]
    try:
        body = {"upstream": f"http://tasks.v2:{port}", "version": "2", "weight": 50}
        assert httpx.put(
            f"{served.url}/-/router/canary", json=body, headers=AUTH, timeout=30
        ).is_success
        answer = httpx.get(f"{served.url}/-/router/canary/metrics", timeout=30)
        assert answer.status_code == 200, answer.text
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        info = families["fake_upstream_info"].samples
        assert sorted(s.labels["task"] for s in info) == [f"127.0.0.{n}:{port}" for n in (5, 6)]
        assert "mlops_router_requests" not in families  # the router's own: not the canary's
    finally:
        stop(stable + canaries)


def test_a_single_canarys_metrics_are_its_own_and_need_no_token(tmp_path: Path) -> None:
    """A remote client (Prometheus, where --remote-admin lets them in) reads them with no
    token, as it reads the stable's /metrics."""
    fake = start_fake(tmp_path, "B")
    router = Router("http://127.0.0.1:9", TOKEN, remote_admin=True)
    router.table = replace(router.table, canary=Canary(Upstream(fake.url, "2"), 10.0))

    async def scrape() -> httpx.Response:
        transport = httpx.ASGITransport(app=router, client=("192.0.2.50", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
            return await client.get("/-/router/canary/metrics")

    try:
        answer = asyncio.run(scrape())
        assert answer.status_code == 200, answer.text
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        assert [s.labels["name"] for s in families["fake_upstream_info"].samples] == ["B"]
        assert "mlops_router_requests" not in families
    finally:
        stop([fake])


def test_a_canary_or_mirror_service_with_no_task_listed_yet_changes_nothing(
    served: Served, port: int
) -> None:
    """As for a switch: Swarm's DNS lists a task a moment after it runs; a canary (or mirror)
    sent there before would fail its share (409, asked again by the console)."""
    for route, body in (
        ("canary", {"upstream": f"http://tasks.v9:{port}", "version": "9", "weight": 50}),
        ("mirror", {"upstream": f"http://tasks.v9:{port}", "version": "9", "percent": 50}),
    ):
        answer = httpx.put(f"{served.url}/-/router/{route}", json=body, headers=AUTH, timeout=30)
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["type"] == "upstream_unresolved"
    assert served.router.table.canary is None and served.router.table.mirror is None
