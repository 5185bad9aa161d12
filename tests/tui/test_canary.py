"""Canary releases on the Deployments screen (state, countdown, resume/abort/promote, each
confirmed, refused read-only) and stable beside canary on the Monitor."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from backends.errors import Conflict
from console.messages import CanaryDecided
from console.modals.confirm import ConfirmModal
from console.modals.message import ErrorModal
from console.screens.deployments import DeploymentsScreen
from tests.tui.fakes import FakeBackends, canary_release, deployment, screen_text
from tests.tui.helpers import Posted, wait_for_message, wait_for_text, wait_until


def decided(fake: FakeBackends) -> list[tuple[object, ...]]:
    return [c for c in fake.calls if c[0] == "decide_canary"]


def notified(app: Any, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


def footer_keys(app: Any) -> set[str]:
    """The keys the screen's footer offers now."""
    return {b.key for _, b, enabled, _ in app.active_bindings.values() if enabled and b.show}


def panel(app: Any) -> str:
    return str(app.screen.query_one("#deploy-canary").render())


async def test_a_running_canary_shows_its_state_checks_and_a_countdown(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    fake.canaries = [canary_release(next_in=59)]  # under a minute: shown in seconds
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for_text(pilot, "canary v3 beside stable v2")
        text = screen_text(app)
        assert "v2 + canary v3 25%" in text  # the table's version cell
        shown = panel(app)
        assert "running · 25% · step 2/4 · failures 1/2" in shown
        assert "steps 10% → 25% → 50% → 100%, every 1m" in shown
        assert "✓ error_ratio < 0.01" in shown and "error_ratio 0.002 < 0.01" in shown
        assert "✗ p99 < 0.25 s" in shown and "p99 0.31 s < 0.25 s" in shown
        assert "? accuracy ≥ stable - 0.02" in shown
        assert "last: failed evaluation 1/2" in shown
        first = int(re.search(r"next evaluation in (\d+)s", shown).group(1))  # type: ignore[union-attr]
        assert 10 <= first <= 59  # counting from 59: a start under ~50 s

        def counted_down() -> bool:
            now = re.search(r"next evaluation in (\d+)s", panel(app))
            return now is not None and int(now.group(1)) <= first - 2

        await wait_until(pilot, counted_down, "the countdown ticking")
        # Running, not paused: abort and promote are offered, resume is not.
        assert {"a", "p"} <= footer_keys(app) and "r" not in footer_keys(app)


async def test_no_canary_no_panel_and_no_keys(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await wait_until(pilot, lambda: ("canary_releases",) in fake.calls, "canaries read")
        assert not app.screen.query_one("#deploy-canary").display
        assert not {"r", "a", "p"} & footer_keys(app)
        await pilot.press("a")
        await pilot.pause(0.1)
        assert isinstance(app.screen, DeploymentsScreen)
        assert notified(app, "iris-prod has no canary release running")
        assert not decided(fake)


async def test_a_finished_release_is_shown_briefly_as_finished(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment(version=3)]
    fake.canaries = [
        canary_release(status="promoted", weight=100.0, step=4, last="step 4/4 → 100 %, promoted")
    ]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_for_text(pilot, "(finished ")
        assert "promoted · 100%" in panel(app) and "step 4/4 → 100 %, promoted" in panel(app)
        assert "v3 + canary" not in screen_text(app)
        assert not {"r", "a", "p"} & footer_keys(app)
        # Long finished: no longer shown.
        old = replace(fake.canaries[0], updated=fake.canaries[0].updated.replace(year=2025))
        fake.canaries = [old]
        await wait_until(pilot, lambda: not app.screen.query_one("#deploy-canary").display, "gone")


@pytest.mark.parametrize(
    ("key", "status", "command", "says", "after"),
    [
        ("r", "paused", "resume", "The analysis goes on at 25 %", "resumed, at 25 %"),
        ("a", "running", "abort", "All traffic goes back to stable v2", "aborted"),
        ("p", "paused", "promote", "v3 becomes the stable version now", "promoted"),
    ],
)
async def test_each_decision_is_confirmed_then_carried_out(
    make_app: Any, fake: FakeBackends, key: str, status: str, command: str, says: str, after: str
) -> None:
    fake.deployments = [deployment()]
    fake.canaries = [canary_release(status=status)]
    app = make_app(start_mode="deploy")
    posted = Posted()
    async with app.run_test(size=(140, 40), message_hook=posted) as pilot:
        await wait_for_text(pilot, f"canary v3 beside stable v2: {status}")
        assert key in footer_keys(app)
        # Cancelled: nothing asked of the release.
        await pilot.press(key)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        assert app.screen.title_text == f"{command.capitalize()} the canary of iris-prod?"
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")
        await pilot.pause(0.1)
        assert not decided(fake)
        # Confirmed: carried out, said, and the panel reloaded.
        await pilot.press(key)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        body = app.screen.body
        assert body.startswith(f"{command.capitalize()} the canary release of iris-prod: iris v3")
        assert f"now {status}, step 2/4, 1/2 failed evaluations" in body and says in body
        await pilot.press("y")
        message = await wait_for_message(pilot, posted, CanaryDecided)
        assert message.command == command
        assert decided(fake) == [("decide_canary", "iris-prod", command)]
        await wait_until(pilot, lambda: notified(app, f"canary v3 {after}"), "the outcome")
        if command == "resume":
            await wait_for_text(pilot, "canary v3 beside stable v2: running")
        else:
            await wait_for_text(pilot, "(finished ")
            await wait_until(pilot, lambda: not {"a", "p"} & footer_keys(app), "keys gone")


async def test_resume_of_a_running_canary_is_not_offered(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    fake.canaries = [canary_release(status="running")]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for_text(pilot, "canary v3 beside stable v2: running")
        await pilot.press("r")
        await pilot.pause(0.1)
        assert isinstance(app.screen, DeploymentsScreen)
        assert notified(app, "is running, not paused: nothing to resume")
        assert not decided(fake)


async def test_a_conflict_is_shown_as_the_backend_said_it(
    make_app: Any, fake: FakeBackends
) -> None:
    """Paused when the dialog opened; resumed by someone else before the yes."""
    fake.deployments = [deployment()]
    fake.canaries = [canary_release(status="paused")]
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for_text(pilot, "canary v3 beside stable v2: paused")
        assert "paused: waiting for a person" in panel(app)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        fake.canaries = [canary_release(status="running")]
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        assert app.screen.title_text == "Canary analysis"
        assert "cannot resume the canary: it is running, not paused" in app.screen.message
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "back")
        assert not app.screen.changing and not app.screen.tasks


async def test_a_backend_error_on_abort_is_shown(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    fake.canaries = [canary_release()]
    fake.failing["decide_canary"] = Conflict("deployment 'iris-prod' has no router")
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for_text(pilot, "canary v3 beside stable v2")
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        assert app.screen.title_text == "Conflict" and "no router" in app.screen.message


async def test_read_only_refuses_the_canary_keys(make_app: Any, fake: FakeBackends) -> None:
    fake.deployments = [deployment()]
    fake.canaries = [canary_release(status="paused")]
    app = make_app(start_mode="deploy", read_only=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for_text(pilot, "canary v3 beside stable v2: paused")
        screen = app.screen
        assert not {"r", "a", "p"} & footer_keys(app)
        await pilot.press("r", "a", "p")
        await pilot.pause(0.2)
        assert app.screen is screen
        for verb in ("resume", "abort", "promote"):
            assert notified(app, f"read-only mode: canary {verb} is disabled")
        await screen.run_action("canary_promote")  # as the palette would, were it not hidden
        await pilot.pause(0.1)
        assert app.screen is screen and not decided(fake)


async def test_canary_releases_that_cannot_be_read_leave_the_list_standing(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.deployments = [deployment()]
    fake.failing["canary_releases"] = PermissionError("canary/iris-prod.json")
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(140, 30)) as pilot:
        await wait_for_text(pilot, "canary releases could not be read")
        assert "iris-prod" in screen_text(app)
        await wait_until(
            pilot, lambda: not app.screen.query_one("#deploy-canary").display, "read again"
        )


async def test_the_monitor_shows_stable_and_canary_side_by_side(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.canaries = [canary_release()]
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for_text(pilot, "canary of iris-prod: v3 at 25% beside stable v2 (running)")
        section = str(app.screen.query_one("#canary-compare").render())
        lines = section.splitlines()
        assert lines[1].split() == ["req/s", "5xx", "p50", "p95", "p99", "accuracy"]
        assert lines[2].split() == [
            "stable",
            "v2",
            "9.5",
            "0.10%",
            "4.0ms",
            "12.0ms",
            "30.0ms",
            "0.95",
        ]
        assert lines[3].split() == [
            "canary",
            "v3",
            "3.2",
            "0.20%",
            "5.0ms",
            "90.0ms",
            "310.0ms",
            "-",
        ]
        fake.canaries = [canary_release(status="aborted", weight=0.0)]
        await wait_until(
            pilot, lambda: not app.screen.query_one("#canary-compare").display, "gone when over"
        )


async def test_the_monitor_without_a_canary_has_no_section(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await wait_until(pilot, lambda: ("canary_releases",) in fake.calls, "canaries read")
        assert not app.screen.query_one("#canary-compare").display
