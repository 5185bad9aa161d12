"""Approvals in the console: a waiting challenger is announced wherever the operator is, marked
on the models screen, and approved with `A` behind a dialog that shows its trigger and gate
report; a move by someone else in between is refused; read-only refuses."""

from __future__ import annotations

from typing import Any

import pytest

from backends.errors import Conflict
from backends.records import GateCheck, GateReport, RetrainTrigger
from console.messages import AliasMoved, ApprovePlanned, BackendFailed, VersionsLoaded
from console.modals.confirm import ConfirmModal
from console.modals.message import ErrorModal
from tests.tui.fakes import FakeBackends, event, screen_text
from tests.tui.helpers import Posted, wait_for_message, wait_for_text, wait_until

REPORT = GateReport(
    comparison="challenger not worse than champion: 0.95 vs 0.91 accuracy on shifted.csv",
    checks=(
        GateCheck("no worse than the champion", True, "0.95 vs 0.91"),
        GateCheck("signature", True, "same inputs as v1"),
    ),
    passed=True,
    champion_version=1,
    at="2026-12-02T01:00:00+00:00",
)
TRIGGER = RetrainTrigger(
    source="alertmanager",
    alert="MlopsFeatureDrift",
    labels={"alertname": "MlopsFeatureDrift", "deployment": "web", "feature": "petal_length"},
    starts_at="2026-12-02T00:40:00Z",
    by="hooks@ops",
)


@pytest.fixture
def waiting(fake: FakeBackends) -> FakeBackends:
    fake.aliases = {"champion": 1, "challenger": 2}
    fake.events.append(event(2, "challenger", None, 2, "promote"))
    fake.pending_report, fake.pending_trigger = REPORT, TRIGGER
    return fake


def notices(app: Any, title: str) -> list[str]:
    return [n.message for n in app._notifications if n.title == title]


async def test_a_waiting_challenger_is_announced_once_wherever_the_operator_is(
    make_app: Any, waiting: FakeBackends
) -> None:
    app = make_app(start_mode="runs", approval_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: bool(notices(app, "Approval needed")), "the notice")
        await pilot.pause(0.3)  # several polls later: still one notice
        (notice,) = notices(app, "Approval needed")
        assert "iris v2 waits for approval" in notice
        assert "MlopsFeatureDrift" in notice and "feature=petal_length" in notice


async def test_approve_shows_trigger_and_gate_report_then_moves_champion(
    make_app: Any, waiting: FakeBackends
) -> None:
    app = make_app(start_mode="models")
    posted = Posted()
    async with app.run_test(size=(140, 44), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, VersionsLoaded)
        await wait_for_text(pilot, "waits for approval")
        await pilot.press("tab")  # to the versions, cursor on v2: A approves it from anywhere
        await pilot.press("A")
        planned = await wait_for_message(pilot, posted, ApprovePlanned)
        assert (planned.plan.version, planned.plan.from_version) == (2, 1)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        body = app.screen.body
        assert "from version 1 to version 2" in body
        assert "alert MlopsFeatureDrift" in body and "feature=petal_length" in body
        assert "0.95 vs 0.91" in body and "pass  signature" in body
        assert "recorded as the approver" in body
        await pilot.press("y")
        moved = await wait_for_message(pilot, posted, AliasMoved)
        assert moved.event is not None and moved.event.action == "approve"
        assert waiting.aliases["champion"] == 2
        assert ("approve", "iris", 2) in waiting.calls
        await pilot.press("enter")  # the gate's result
        await wait_until(pilot, lambda: "waits for approval" not in screen_text(app), "unmarked")


async def test_an_approval_after_the_challenger_moved_is_refused(
    make_app: Any, waiting: FakeBackends
) -> None:
    app = make_app(start_mode="models")
    posted = Posted()
    async with app.run_test(size=(140, 44), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, VersionsLoaded)
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        waiting.aliases["challenger"] = 3  # another retraining, while the dialog is open
        waiting.events.append(event(3, "challenger", 2, 3, "promote"))
        await pilot.press("y")
        failed = await wait_for_message(pilot, posted, BackendFailed)
        assert isinstance(failed.error, Conflict)
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "the conflict")
        assert waiting.aliases["champion"] == 1 and not posted.of(AliasMoved)


async def test_nothing_waiting_says_so(make_app: Any, fake: FakeBackends) -> None:
    app = make_app(start_mode="models")
    posted = Posted()
    async with app.run_test(size=(120, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, VersionsLoaded)
        await pilot.press("A")
        await wait_until(
            pilot,
            lambda: any("waits for approval" in n.message for n in app._notifications),
            "the notice",
        )
        assert not any(c[0] == "plan_approve" for c in fake.calls)


async def test_read_only_refuses_approve(make_app: Any, waiting: FakeBackends) -> None:
    app = make_app(start_mode="models", read_only=True)
    posted = Posted()
    async with app.run_test(size=(120, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, VersionsLoaded)
        await pilot.press("A")
        await pilot.pause(0.2)
        assert not any(c[0] in ("plan_approve", "approve") for c in waiting.calls)
        assert waiting.aliases["champion"] == 1


async def test_many_at_once_are_one_notice(make_app: Any, fake: FakeBackends) -> None:
    from datetime import UTC, datetime

    from backends.records import PendingApproval

    many = [
        PendingApproval(f"m{i}", 2, 1, datetime(2026, 1, 1, tzinfo=UTC), None, None, None)
        for i in range(7)
    ]
    fake.pending_approvals = lambda: many  # type: ignore[method-assign]
    app = make_app(start_mode="runs", approval_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: bool(notices(app, "Approval needed")), "the notice")
        await pilot.pause(0.3)
        (notice,) = notices(app, "Approval needed")
        assert notice.startswith("7 challengers wait for approval: m0 v2, m1 v2")
        assert "m4 v2 …" in notice and "m6" not in notice
