"""Deployments: the live map refreshes by itself; logs; take down and roll back confirm first."""

from __future__ import annotations

from typing import Any

from console.modals.confirm import ConfirmModal
from console.screens.deployments import DeploymentsScreen
from console.screens.logs import LogsScreen
from tests.tui.fakes import FakeBackends, deployment
from tests.tui.helpers import wait_for_text, wait_until


def refreshes(fake: FakeBackends) -> int:
    return sum(1 for c in fake.calls if c[0] == "list_deployments")


async def test_live_map_refreshes_and_pauses_while_hidden(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        text = await wait_for_text(pilot, "iris-prod")
        for expected in ("v2", "champion", "running", "healthy", "8080"):
            assert expected in text
        await wait_until(pilot, lambda: refreshes(fake) >= 3, "periodic refresh")
        fake.deployments.append(deployment("iris-canary", "3"))
        await wait_for_text(pilot, "iris-canary")
        await app.switch_mode("runs")
        await pilot.pause(0.3)
        hidden = refreshes(fake)
        await pilot.pause(0.5)
        assert refreshes(fake) == hidden  # paused while another screen shows
        await app.switch_mode("deploy")
        await wait_until(pilot, lambda: refreshes(fake) > hidden, "resumed")


async def test_take_down_confirms_then_removes(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        assert "'iris-prod'" in app.screen.body and "iris v2 on port 8080" in app.screen.body
        await pilot.press("y")
        await wait_until(pilot, lambda: ("remove_deployment", "iris-prod") in fake.calls, "rm")
        await wait_for_text(pilot, "no deployments")


async def test_rollback_confirms_from_and_to(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        assert "from version 2" in app.screen.body and "to   version 1" in app.screen.body
        await pilot.press("y")
        await wait_until(
            pilot, lambda: ("rollback_deployment", "iris-prod") in fake.calls, "rolled back"
        )


async def test_logs(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LogsScreen), "logs")
        log = app.screen.query_one("#log-view")
        await wait_until(pilot, lambda: len(log.lines) == 2, "log lines")
        assert "ready on :8080" in log.lines[1].text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")


async def test_read_only_refuses_take_down(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy", read_only=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("d", "R")
        await pilot.pause(0.2)
        assert isinstance(app.screen, DeploymentsScreen)
        assert sum("read-only" in n.message for n in app._notifications) == 2
        assert not any(c[0] in ("remove_deployment", "rollback_deployment") for c in fake.calls)


async def test_docker_down_shows_unreachable_then_recovers(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    fake.down["docker"] = 2
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "docker unreachable since")
        await wait_for_text(pilot, "iris-prod")
