"""Alerts: groups with their state, acknowledge and silence shown before posting (with how many
alerts they match), expire, the runbook in the console, read-only sources and outages."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input

from console.messages import AlertsChanged, AlertsLoaded, BackendFailed, SilencePlanned
from console.modals.confirm import ConfirmModal
from console.modals.runbook import RunbookModal
from console.modals.silence_form import SilenceForm
from tests.tui.fakes import FakeAlerts, group, managed
from tests.tui.helpers import Posted, wait_for_message, wait_for_text, wait_until


def drifting() -> FakeAlerts:
    return FakeAlerts(
        groups=[
            group(
                managed("MlopsFeatureDrift", "web", feature="petal_length"),
                managed("MlopsFeatureDrift", "web", feature="sepal_width"),
            ),
            group(managed("MlopsHighErrorRatio", "api", "critical")),
        ]
    )


async def test_groups_show_with_state_and_detail(make_app: Any, fake_alerts: FakeAlerts) -> None:
    fake_alerts.groups = drifting().groups
    app = make_app(start_mode="alerts")
    async with app.run_test(size=(160, 40)) as pilot:
        text = await wait_for_text(pilot, "MlopsFeatureDrift")
        assert "MlopsHighErrorRatio" in text and "critical" in text
        assert "feature=petal_length" in text and "feature=sepal_width" in text
        assert "3 alerts in 2 groups" in text and "alertmanager http://am:9093" in text
        assert "runbook (r): docs/runbooks/" in text  # the selected alert's detail


async def test_ack_shows_the_plan_then_silences_the_group(
    make_app: Any, fake_alerts: FakeAlerts
) -> None:
    fake_alerts.groups = drifting().groups
    app = make_app(start_mode="alerts")
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, AlertsLoaded, lambda m: bool(m.view.groups))
        await pilot.press("a")
        planned = await wait_for_message(pilot, posted, SilencePlanned)
        assert planned.plan.acknowledges == fake_alerts.groups[0].id
        assert len(planned.plan.matching) == 2 and planned.plan.minutes == 15
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the ack dialog")
        body = str(app.screen.query_one("#confirm-body").render())
        assert "matches 2 alerts now" in body and 'deployment="web"' in body
        assert fake_alerts.posted == []  # nothing posted before the operator says yes
        await pilot.press("y")
        await wait_for_message(pilot, posted, AlertsChanged)
        assert len(fake_alerts.posted) == 1
        await wait_for_text(pilot, "silenced by 00000001")


async def test_silence_form_then_the_count_then_post(
    make_app: Any, fake_alerts: FakeAlerts
) -> None:
    fake_alerts.groups = drifting().groups
    app = make_app(start_mode="alerts")
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, AlertsLoaded, lambda m: bool(m.view.groups))
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SilenceForm), "the silence form")
        field = app.screen.query_one("#silence-matchers", Input)
        assert field.value == 'alertname="MlopsFeatureDrift", deployment="web"'  # prefilled
        field.value = 'feature=~"petal.*"'
        app.screen.query_one("#silence-for", Input).value = "1h"
        app.screen.query_one("#silence-comment", Input).value = "known upstream change"
        await pilot.press("enter")
        planned = await wait_for_message(pilot, posted, SilencePlanned)
        assert len(planned.plan.matching) == 1 and planned.plan.minutes == 60
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the plan")
        assert "matches 1 alert now" in str(app.screen.query_one("#confirm-body").render())
        await pilot.press("n")
        await pilot.pause(0.2)
        assert fake_alerts.posted == []  # "no" posts nothing


async def test_a_bad_matcher_keeps_the_form_open_saying_why(
    make_app: Any, fake_alerts: FakeAlerts
) -> None:
    fake_alerts.groups = drifting().groups
    app = make_app(start_mode="alerts")
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, AlertsLoaded, lambda m: bool(m.view.groups))
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SilenceForm), "the silence form")
        app.screen.query_one("#silence-matchers", Input).value = 'alertname=~".*"'
        await pilot.press("enter")
        await wait_for_text(pilot, "also match alerts without")
        assert isinstance(app.screen, SilenceForm) and not posted.of(SilencePlanned)


async def test_expire_the_silence_of_the_selected_alert(
    make_app: Any, fake_alerts: FakeAlerts
) -> None:
    fake_alerts.groups = drifting().groups
    app = make_app(start_mode="alerts")
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, AlertsLoaded, lambda m: bool(m.view.groups))
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the ack dialog")
        await pilot.press("y")
        await wait_for_text(pilot, "silenced by 00000001")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "expire dialog")
        assert "2 alerts it quiets will notify again" in str(
            app.screen.query_one("#confirm-body").render()
        )
        await pilot.press("y")
        await wait_until(pilot, lambda: fake_alerts.expired == ["00000001-silence"], "expired")


async def test_the_runbook_opens_in_the_console(make_app: Any, fake_alerts: FakeAlerts) -> None:
    fake_alerts.groups = drifting().groups
    app = make_app(start_mode="alerts")
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, AlertsLoaded, lambda m: bool(m.view.groups))
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RunbookModal), "the runbook")
        assert "input" in app.screen.text and "# MlopsFeatureDrift" in app.screen.text


async def test_read_only_source_refuses_changes(make_app: Any, fake_alerts: FakeAlerts) -> None:
    fake_alerts.groups = drifting().groups
    fake_alerts.read_only = True
    app = make_app(start_mode="alerts")
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, AlertsLoaded, lambda m: bool(m.view.groups))
        await wait_for_text(pilot, "read-only")
        for key in ("a", "s", "x"):
            await pilot.press(key)
        await pilot.pause(0.2)
        assert not posted.of(SilencePlanned) and not isinstance(app.screen, SilenceForm)
        assert any("read-only" in n.message for n in app._notifications)


async def test_console_read_only_hides_changes(make_app: Any, fake_alerts: FakeAlerts) -> None:
    fake_alerts.groups = drifting().groups
    app = make_app(start_mode="alerts", read_only=True)
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, AlertsLoaded, lambda m: bool(m.view.groups))
        await pilot.press("a")
        await pilot.pause(0.2)
        assert not posted.of(SilencePlanned)


async def test_an_unreachable_alertmanager_is_named_and_recovers(
    make_app: Any, fake_alerts: FakeAlerts
) -> None:
    fake_alerts.groups = drifting().groups
    fake_alerts.down = 2
    app = make_app(start_mode="alerts")
    posted = Posted()
    async with app.run_test(size=(160, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, BackendFailed)
        await wait_for_text(pilot, "Alertmanager unreachable since")
        await wait_for_text(pilot, "MlopsFeatureDrift")  # by itself, after the backoff
        assert "unreachable" not in str(app.screen.query_one("#pane-status").render())


async def test_jump_to_alerts(make_app: Any, fake_alerts: FakeAlerts) -> None:
    fake_alerts.groups = drifting().groups
    app = make_app(start_mode="runs")
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("colon")
        for key in "alerts":
            await pilot.press(key)
        await pilot.press("enter")
        await wait_for_text(pilot, "MlopsFeatureDrift")
