"""The router's mirror (`python -m server.router` as a real process): clients get the primary's
answers only, the disagreement with a mirror whose answers differ on a known part is measured
exactly, and a dead or slow mirror neither fails nor delays a client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.server.router_helpers import Fake, change, metric, start_fake, state, wait_for
from tests.server.test_router_faults import Router, start_router

LABEL_ROWS = [[i] for i in range(8)]  # the skewed fake differs on rows 0 and 4: a quarter
NUMBER_ROWS = [[i + 0.25] for i in range(8)]  # the skewed fake adds 0.5 to each


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fake]:
    fake = start_fake(tmp_path_factory.mktemp("primary"), "A")
    try:
        yield fake
    finally:
        services._stop(fake.proc)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fake]:
    fake = start_fake(tmp_path_factory.mktemp("skewed"), "M", "--skew")
    try:
        yield fake
    finally:
        services._stop(fake.proc)


def start(primary: Fake, tmp_path: Path, **env: str) -> Router:
    return start_router(primary.url, tmp_path, **env)


def mirror(router: Router, url: str, percent: float) -> None:
    body = {"upstream": url, "version": "3", "percent": percent}
    answer = change(router, "PUT", "mirror", body)
    assert answer.status_code == 200, answer.text


def predict(http: httpx.Client, router: Router, rows: list[list[float]], path: str) -> None:
    """One prediction, which must be the primary's."""
    body = {"data": rows} if path == "/predict" else {"dataframe_split": {"data": rows}}
    r = http.post(f"{router.url}{path}", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-upstream"] == "A"
    expected = [x % 3 if isinstance(x, int) else float(x) for (x,) in rows]
    assert r.json()["predictions"] == expected


def test_clients_get_the_primary_and_the_disagreement_is_measured(
    primary: Fake, skewed: Fake, tmp_path: Path
) -> None:
    router = start(primary, tmp_path)
    try:
        mirror(router, skewed.url, 100)
        with httpx.Client(timeout=30) as http:
            for i in range(50):
                predict(http, router, LABEL_ROWS, "/predict" if i % 2 else "/invocations")
            wait_for(
                "400 label rows compared",
                lambda: metric(router, "mlops_mirror_rows_compared_total", kind="label") == 400,
            )
            assert metric(router, "mlops_mirror_disagreement_ratio") == 0.25
            assert metric(router, "mlops_mirror_rows_differing_total") == 100
            assert metric(router, "mlops_mirror_window_rows") == 400
            assert metric(router, "mlops_mirror_mean_absolute_difference") == 0
            mirrored = metric(router, "mlops_router_requests_total", role="mirror", version="3")
            assert mirrored == 50
            assert metric(router, "mlops_mirror_duration_seconds_count") == 50
            assert metric(router, "mlops_mirror_errors_total") == 0

            # A regressor's numbers: the mean absolute difference.
            for _ in range(10):
                predict(http, router, NUMBER_ROWS, "/predict")
            wait_for(
                "80 numeric rows compared",
                lambda: metric(router, "mlops_mirror_rows_compared_total", kind="numeric") == 80,
            )
            assert metric(router, "mlops_mirror_mean_absolute_difference") == 0.5
            assert metric(router, "mlops_mirror_absolute_difference_total") == 40
            assert metric(router, "mlops_mirror_disagreement_ratio") == (100 + 80) / 480

            # Only predictions are copied, and only the share asked for.
            assert http.get(f"{router.url}/who").status_code == 200
            mirror(router, skewed.url, 0)
            for _ in range(20):
                predict(http, router, LABEL_ROWS, "/predict")
        copies = metric(router, "mlops_router_requests_total", role="mirror")
        assert copies == 60
        # The mirror's own answers never reached a client: the primary answered them all.
        assert metric(router, "mlops_router_requests_total", role="stable", status="200") == 81
        # A new mirror starts a new comparison.
        mirror(router, primary.url, 100)
        assert metric(router, "mlops_mirror_window_rows") == 0
        assert change(router, "DELETE", "mirror").json()["removed"]["upstream"] == primary.url
        assert state(router)["mirror"] is None
    finally:
        services._stop(router.proc)


def test_a_dead_mirror_never_fails_a_client(primary: Fake, tmp_path: Path) -> None:
    router = start(primary, tmp_path)
    try:
        with services.CountingDeadEnd() as dead, httpx.Client(timeout=30) as http:
            mirror(router, dead.url, 100)  # accepts, then resets every connection
            for _ in range(25):
                predict(http, router, LABEL_ROWS, "/predict")
            wait_for("25 mirror errors", lambda: metric(router, "mlops_mirror_errors_total") == 25)
        # (A reset can come while connecting or after: either cause is right for it.)
        refused = metric(router, "mlops_mirror_errors_total", cause="connect")
        mirror(router, f"http://127.0.0.1:{services.free_port()}", 100)  # nothing listens
        with httpx.Client(timeout=30) as http:
            for _ in range(25):
                predict(http, router, LABEL_ROWS, "/predict")
        wait_for("50 mirror errors", lambda: metric(router, "mlops_mirror_errors_total") == 50)
        assert metric(router, "mlops_mirror_errors_total", cause="connect") == refused + 25
        assert metric(router, "mlops_mirror_rows_compared_total") == 0
        assert metric(router, "mlops_router_upstream_errors_total") == 0  # not the clients'
    finally:
        services._stop(router.proc)


def test_a_slow_mirror_neither_slows_clients_nor_piles_up(primary: Fake, tmp_path: Path) -> None:
    # The mirror takes two minutes per answer; a client gives up after 30 s. Had the router
    # waited for the mirror, every request below would time out.
    slow = start_fake(tmp_path, "slow", "--delay", "120")
    router = start(
        primary,
        tmp_path,
        MLOPS_ROUTER_MIRROR_MAX_IN_FLIGHT="4",
        MLOPS_ROUTER_MIRROR_TIMEOUT="300",
    )
    try:
        mirror(router, slow.url, 100)
        with httpx.Client(timeout=30) as http:
            for _ in range(40):
                predict(http, router, LABEL_ROWS, "/predict")
        # Four copies wait on the mirror; the other 36 were dropped, and counted.
        assert metric(router, "mlops_mirror_dropped_total", reason="busy") == 36
        assert state(router)["mirror_in_flight"] == 4
        wait_for("the four copies to reach the mirror", lambda: slow.stats()["predictions"] == 4)
    finally:
        services._stop(router.proc)
        services._stop(slow.proc)
