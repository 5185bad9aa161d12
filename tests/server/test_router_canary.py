"""The router's canary (`python -m server.router` as a real process, between two fake model
servers that say who answered): the split follows the weight, sticky users stay on one version,
changes under load fail nothing, removal drains, promotion, a restart, and the admin API's
refusals."""

from __future__ import annotations

import functools
import json
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.router import Router as Proxy
from tests import services
from tests.server.router_helpers import (
    AUTH,
    Fake,
    change,
    metric,
    start_fake,
    state,
    wait_for,
)
from tests.server.test_router_faults import Router, start_router


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fake, Fake]]:
    """Two upstreams: A (the stable, version 1) and B (the canary, version 2)."""
    tmp = tmp_path_factory.mktemp("fakes")
    a = start_fake(tmp, "A")
    try:
        b = start_fake(tmp, "B")
        try:
            yield a, b
        finally:
            services._stop(b.proc)
    finally:
        services._stop(a.proc)


@pytest.fixture
def router(fakes: tuple[Fake, Fake], tmp_path: Path) -> Iterator[Router]:
    r = start_router(fakes[0].url, tmp_path)
    try:
        yield r
    finally:
        services._stop(r.proc)


def canary(router: Router, fake: Fake, weight: float, **more: object) -> None:
    body = {"upstream": fake.url, "version": "2", "weight": weight, **more}
    answer = change(router, "PUT", "canary", body)
    assert answer.status_code == 200, answer.text


def answered_by(router: Router, n: int, user: str | None = None) -> Counter[str]:
    """Who answered ``n`` requests (as ``user`` when given, in X-User-Id)."""
    headers = {"X-User-Id": user} if user is not None else {}
    seen: Counter[str] = Counter()
    http = _client()  # one for the module: a client per call costs its TLS context, ~10 ms
    for _ in range(n):
        r = http.get(f"{router.url}/who", headers=headers)
        assert r.status_code == 200, r.text
        seen[r.headers["x-upstream"]] += 1
    return seen


@functools.cache
def _client() -> httpx.Client:
    return httpx.Client(timeout=30)


def test_the_split_follows_the_weight(router: Router, fakes: tuple[Fake, Fake]) -> None:
    canary(router, fakes[1], 0)
    assert answered_by(router, 200) == {"A": 200}
    canary(router, fakes[1], 100)
    assert answered_by(router, 200) == {"B": 200}
    # Binomial bounds about 4.5 standard deviations wide: a false alarm is about 1 in 10^5.
    canary(router, fakes[1], 10)
    assert 30 <= answered_by(router, 600)["B"] <= 95
    canary(router, fakes[1], 50)
    assert 240 <= answered_by(router, 600)["B"] <= 360
    # Each answer is counted under the version and role that gave it.
    assert metric(router, "mlops_router_requests_total", role="canary", version="2") > 0
    assert metric(router, "mlops_router_requests_total", role="stable", version="1") > 0


def test_a_user_stays_on_one_version_and_users_spread(
    router: Router, fakes: tuple[Fake, Fake]
) -> None:
    canary(router, fakes[1], 50, sticky_header="X-User-Id")
    for user in ("alice", "bob", "carol"):
        assert len(answered_by(router, 200, user)) == 1, user
    on_canary = Counter(next(iter(answered_by(router, 1, f"user-{i}"))) for i in range(200))
    assert 60 <= on_canary["B"] <= 140, on_canary
    # A request without the header is drawn on its own.
    assert set(answered_by(router, 200)) == {"A", "B"}
    # As the weight grows, the users already on the canary stay there.
    assert change(router, "PATCH", "canary", {"weight": 10}).status_code == 200
    at_10 = {i for i in range(300) if "B" in answered_by(router, 1, f"u{i}")}
    assert change(router, "PATCH", "canary", {"weight": 50}).status_code == 200
    at_50 = {i for i in range(300) if "B" in answered_by(router, 1, f"u{i}")}
    assert at_10 and at_10 < at_50


def test_changes_under_load_fail_no_request(router: Router, fakes: tuple[Fake, Fake]) -> None:
    a, b = fakes
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = http.post(
                        f"{router.url}/predict",
                        json={"data": [[i], [i + 1]]},
                        headers={"X-User-Id": f"w{worker}-{i % 7}"},
                    )
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200 or r.json()["predictions"] != [i % 3, (i + 1) % 3]:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    outcomes[r.headers["x-upstream"]] += 1

    def then_some_requests() -> None:
        seen = sum(outcomes.values()) + len(failures)
        wait_for("requests after a change", lambda: sum(outcomes.values()) >= seen + 30)

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        then_some_requests()
        steps: list[tuple[str, str, dict[str, object] | None]] = [
            ("PUT", "canary", {"upstream": b.url, "version": "2", "weight": 10}),
            ("PATCH", "canary", {"weight": 50}),
            ("PATCH", "canary", {"weight": 100, "sticky_header": "X-User-Id"}),
            ("PATCH", "canary", {"weight": 30}),
            ("DELETE", "canary", None),
            ("PUT", "canary", {"upstream": b.url, "version": "2", "weight": 50}),
            ("POST", "canary/promote", None),
            ("PUT", "canary", {"upstream": a.url, "version": "1", "weight": 50}),
            ("POST", "canary/promote", None),
            ("PUT", "upstream", {"upstream": b.url, "version": "2"}),
            ("PUT", "upstream", {"upstream": a.url, "version": "1"}),
        ]
        for method, path, body in steps:
            answer = change(router, method, path, body)
            assert answer.status_code == 200, (method, path, answer.text)
            assert answer.json().get("drained", True) is True
            then_some_requests()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert failures == []
    assert outcomes["A"] > 0 and outcomes["B"] > 0, outcomes


def test_removing_the_canary_waits_for_its_requests(
    router: Router, fakes: tuple[Fake, Fake]
) -> None:
    b = fakes[1]
    canary(router, b, 100)
    finished_before = b.stats()["finished"]
    slow: dict[str, httpx.Response] = {}
    worker = threading.Thread(
        target=lambda: slow.update(r=httpx.get(f"{router.url}/slow?seconds=3", timeout=120))
    )
    worker.start()
    wait_for("the slow request on the canary", lambda: b.stats()["in_progress"] >= 1)
    removed = change(router, "DELETE", "canary", {"drain_timeout": 60})
    # The call returned only once the canary had answered the request it was given.
    assert b.stats()["finished"] > finished_before and b.stats()["in_progress"] == 0
    assert removed.status_code == 200 and removed.json()["drained"] is True
    assert removed.json()["removed"]["upstream"] == b.url
    worker.join(120)
    assert slow["r"].status_code == 200 and slow["r"].json() == {"upstream": "B"}
    assert answered_by(router, 50) == {"A": 50}
    assert state(router)["canary"] is None
    # Removing it again is not an error: a rollback may always ask.
    again = change(router, "DELETE", "canary")
    assert again.status_code == 200 and again.json()["removed"] is None


def test_promoting_makes_the_canary_the_stable(router: Router, fakes: tuple[Fake, Fake]) -> None:
    a, b = fakes
    canary(router, b, 10, sticky_header="X-User-Id")
    promoted = change(router, "POST", "canary/promote")
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["stable"] == {"upstream": b.url, "version": "2"}
    assert promoted.json()["previous"] == {"upstream": a.url, "version": "1"}
    now = state(router)
    assert now["stable"] == {"upstream": b.url, "version": "2"} and now["canary"] is None
    assert answered_by(router, 50) == {"B": 50}
    health = httpx.get(f"{router.url}/-/router/health").json()
    assert health["upstream"] == b.url and health["version"] == "2"
    # Nothing left to promote.
    assert change(router, "POST", "canary/promote").status_code == 409


def test_metrics_and_admin_go_to_the_stable(router: Router, fakes: tuple[Fake, Fake]) -> None:
    canary(router, fakes[1], 100)
    answered_by(router, 5)
    scraped = httpx.get(f"{router.url}/metrics").text
    assert 'fake_upstream_info{name="A"}' in scraped  # the stable's, whatever the weight
    assert 'mlops_router_requests_total{role="canary",status="200",version="2"} 5.0' in scraped


def test_a_restarted_router_comes_back_on_its_canary_and_mirror(
    router: Router, fakes: tuple[Fake, Fake], tmp_path: Path
) -> None:
    a, b = fakes
    canary(router, b, 25, sticky_header="X-User-Id")
    mirrored = change(router, "PUT", "mirror", {"upstream": b.url, "version": "2", "percent": 5})
    assert mirrored.status_code == 200, mirrored.text
    before = state(router)
    router.proc.send_signal(signal.SIGKILL)
    router.proc.wait(30)
    # Started again as its container would be: with its original --upstream.
    again = start_router(a.url, tmp_path, port=router.port)
    try:
        after = state(again)
        for part in ("stable", "canary", "mirror"):
            assert after[part] == before[part], part
        assert after["canary"]["weight"] == 25 and after["canary"]["sticky_header"] == "x-user-id"
        assert set(answered_by(again, 100)) == {"A", "B"}
    finally:
        services._stop(again.proc)


def test_an_old_state_file_still_loads(tmp_path: Path) -> None:
    (tmp_path / "upstream.json").write_text(
        json.dumps({"upstream": "http://127.0.0.1:4321/", "version": "7"})
    )
    table = Proxy("http://127.0.0.1:9", "t", state_dir=tmp_path).table
    assert (table.stable.url, table.stable.version) == ("http://127.0.0.1:4321", "7")
    assert table.canary is None and table.mirror is None
    # A canary that no longer validates is left out; the stable still comes back.
    (tmp_path / "upstream.json").write_text(
        json.dumps({"upstream": "http://s:1", "version": "3", "canary": {"weight": 500}})
    )
    table = Proxy("http://127.0.0.1:9", "t", state_dir=tmp_path).table
    assert table.stable.url == "http://s:1" and table.canary is None


async def test_a_new_state_file_keeps_the_stable_where_an_old_router_reads_it(
    tmp_path: Path,
) -> None:
    proxy = Proxy("http://127.0.0.1:9", "t", version="1", state_dir=tmp_path)
    transport = httpx.ASGITransport(app=proxy, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as local:
        answer = await local.put(
            "/-/router/canary",
            json={"upstream": "http://127.0.0.1:10", "version": 2, "weight": 5},
            headers={"Authorization": "Bearer t"},
        )
        assert answer.status_code == 200, answer.text
    saved = json.loads((tmp_path / "upstream.json").read_text())
    assert saved["upstream"] == "http://127.0.0.1:9" and saved["version"] == "1"
    assert saved["canary"] == {
        "upstream": "http://127.0.0.1:10",
        "version": "2",
        "weight": 5.0,
        "sticky_header": None,
    }
    await proxy.mirroring.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("PUT", "canary", {"upstream": "http://c:1", "weight": 101}, 422, "weight"),
        ("PUT", "canary", {"upstream": "http://c:1", "weight": -1}, 422, "weight"),
        ("PUT", "canary", {"upstream": "http://c:1", "weight": "10"}, 422, "weight"),
        ("PUT", "canary", {"upstream": "http://c:1", "weight": True}, 422, "weight"),
        ("PUT", "canary", {"upstream": "http://c:1"}, 422, "weight"),
        ("PUT", "canary", {"upstream": "ftp://c:1", "weight": 5}, 422, "upstream"),
        ("PUT", "canary", {"upstream": "c:1", "weight": 5}, 422, "upstream"),
        ("PUT", "canary", {"upstream": "http://c:port", "weight": 5}, 422, "upstream"),
        ("PUT", "canary", {"upstream": ["http://c:1"], "weight": 5}, 422, "upstream"),
        ("PUT", "canary", {"weight": 5}, 422, "upstream"),
        ("PUT", "canary", {"upstream": "http://c:1", "weight": 5, "version": {}}, 422, "version"),
        ("PUT", "canary", {"upstream": "http://c:1", "weight": 5, "wieght": 5}, 422, "wieght"),
        (
            "PUT",
            "canary",
            {"upstream": "http://c:1", "weight": 5, "sticky_header": "X User"},
            422,
            "sticky_header",
        ),
        (
            "PUT",
            "canary",
            {"upstream": "http://c:1", "weight": 5, "sticky_header": 7},
            422,
            "sticky_header",
        ),
        (
            "PUT",
            "canary",
            {"upstream": "http://c:1", "weight": 5, "drain_timeout": "soon"},
            422,
            "drain_timeout",
        ),
        ("PUT", "canary", [1, 2], 422, "body"),
        ("PATCH", "canary", {"weight": 5}, 404, None),
        ("POST", "canary/promote", None, 409, None),
        ("DELETE", "canary", {"now": True}, 422, "now"),
        ("GET", "canary", None, 405, None),
        ("PUT", "mirror", {"upstream": "http://m:1", "percent": 100.5}, 422, "percent"),
        ("PUT", "mirror", {"upstream": "http://m:1", "percent": "all"}, 422, "percent"),
        ("PUT", "mirror", {"upstream": "http://m:1"}, 422, "percent"),
        ("PUT", "mirror", {"upstream": "mailto:m", "percent": 5}, 422, "upstream"),
        ("PUT", "mirror", {"upstream": "http://m:1", "percent": 5, "weight": 1}, 422, "weight"),
        ("POST", "state", None, 405, None),
        ("PUT", "nothing", None, 404, None),
    ],
)
async def test_admin_changes_it_cannot_apply_are_refused_readably(
    method: str, path: str, body: object, status: int, field: str | None
) -> None:
    proxy = Proxy("http://127.0.0.1:9", "t", version="1")
    before = proxy.table
    transport = httpx.ASGITransport(app=proxy, client=("127.0.0.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as local:
        answer = await local.request(
            method, f"/-/router/{path}", json=body, headers={"Authorization": "Bearer t"}
        )
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["type"] and error["message"]
    if field is not None:
        assert error["details"]["field"] == field and field in error["message"]
    assert proxy.table is before  # nothing changed
    await proxy.mirroring.close()


async def test_admin_changes_need_the_token_and_a_loopback_client() -> None:
    proxy = Proxy("http://127.0.0.1:9", "t")
    local = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=proxy, client=("127.0.0.1", 1)), base_url="http://r"
    )
    remote = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=proxy, client=("10.0.0.7", 1)), base_url="http://r"
    )
    body = {"upstream": "http://c:1", "weight": 5}
    async with local, remote:
        assert (await local.put("/-/router/canary", json=body)).status_code == 401
        wrong = await local.put(
            "/-/router/canary", json=body, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 403
        for path in ("state", "canary", "canary/promote", "mirror"):
            assert (
                await remote.put(f"/-/router/{path}", json=body, headers=AUTH)
            ).status_code == 404
        bad_json = await local.put(
            "/-/router/canary", content=b"{", headers={"Authorization": "Bearer t"}
        )
        assert bad_json.status_code == 400 and bad_json.json()["error"]["type"] == "invalid_json"
        assert (await local.get("/-/router/state")).json()["canary"] is None
    await proxy.mirroring.close()
