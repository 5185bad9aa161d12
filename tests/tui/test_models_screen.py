"""Models: versions with aliases; promote and roll back behind a confirm; history; read-only."""

from __future__ import annotations

from typing import Any

from backends.errors import Conflict
from backends.records import PolicyCheck, PolicyReport, SliceFigure
from console.messages import (
    AliasMoved,
    AliasRollbackPlanned,
    BackendFailed,
    PromotePlanned,
    VersionsLoaded,
)
from console.modals.confirm import ConfirmModal
from console.modals.message import ErrorModal, MessageModal
from console.screens.alias_history import AliasHistoryScreen
from console.screens.models import ModelsScreen
from tests.tui.fakes import FakeBackends, event, screen_text
from tests.tui.helpers import Posted, wait_for_message, wait_for_text, wait_until


async def open_models(app: Any, pilot: Any) -> None:
    await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen), "models screen")
    await wait_for_text(pilot, "champion=v1")
    await wait_for_text(pilot, "0.92")  # v2's accuracy: the versions arrived


async def test_models_and_versions_with_aliases(make_app: Any) -> None:
    app = make_app(start_mode="models")
    async with app.run_test(size=(120, 30)) as pilot:
        await open_models(app, pilot)
        text = screen_text(app)
        assert "iris" in text and "v2" in text and "READY" in text and "champion" in text


async def test_promote_asks_naming_model_alias_and_versions_then_shows_the_gate(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="models")
    posted = Posted()
    async with app.run_test(size=(120, 40), message_hook=posted) as pilot:
        loaded = await wait_for_message(pilot, posted, VersionsLoaded)
        assert [v.version for v in loaded.versions] == [2, 1]
        await pilot.press("p")  # cursor on v2 (newest first)
        planned = await wait_for_message(pilot, posted, PromotePlanned)
        plan = planned.plan
        assert (plan.model, plan.alias, plan.from_version, plan.version) == (
            "iris",
            "champion",
            1,
            2,
        )
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        body = app.screen.body  # the dialog says what the plan says
        assert "'champion'" in body and "'iris'" in body
        assert "from version 1" in body and "to   version 2" in body
        await pilot.press("y")
        moved = await wait_for_message(pilot, posted, AliasMoved)
        assert moved.event is not None and moved.gate is not None and moved.gate.passed
        assert (moved.event.from_version, moved.event.to_version) == (1, 2)
        await wait_until(pilot, lambda: isinstance(app.screen, MessageModal), "gate result")
        assert "Gate passed" in app.screen.title_text and "predict" in app.screen.message
        await pilot.press("enter")
        await wait_for_text(pilot, "champion=v2")


async def test_a_promote_confirmed_after_someone_else_moved_the_alias_is_refused(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="models")
    posted = Posted()
    async with app.run_test(size=(120, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, VersionsLoaded)
        await pilot.press("p")
        await wait_for_message(pilot, posted, PromotePlanned)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        fake.aliases["champion"] = 2  # bob, elsewhere, while the dialog is open
        fake.events.append(event(2, "champion", 1, 2, "promote"))
        await pilot.press("y")
        failed = await wait_for_message(pilot, posted, BackendFailed)
        assert isinstance(failed.error, Conflict) and "bob" in failed.error.message
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "the conflict")
        assert app.screen.title_text == "Conflict"
        assert not posted.of(AliasMoved)


async def test_cancelled_promote_moves_nothing(make_app: Any, fake: FakeBackends) -> None:
    app = make_app(start_mode="models")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(app, pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        await pilot.press("n")
        await pilot.pause(0.2)
        assert not any(c[0] == "promote" for c in fake.calls)


async def test_failed_gate_shows_the_backends_title_and_message(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.gate_passes = False
    app = make_app(start_mode="models")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(app, pilot)
        await pilot.press("p", "y")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        assert app.screen.title_text == "Gate failed"
        assert "did not pass" in app.screen.message


async def test_rollback_confirms_from_and_to(make_app: Any, fake: FakeBackends) -> None:
    fake.aliases["champion"] = 2
    fake.events.append(event(2, "champion", 1, 2, "promote"))
    app = make_app(start_mode="models")
    posted = Posted()
    async with app.run_test(size=(120, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, VersionsLoaded)
        await pilot.press("r")
        planned = await wait_for_message(pilot, posted, AliasRollbackPlanned)
        assert (planned.plan.from_version, planned.plan.to_version) == (2, 1)
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        assert "from version 2" in app.screen.body and "to   version 1" in app.screen.body
        await pilot.press("y")
        moved = await wait_for_message(pilot, posted, AliasMoved)
        assert moved.event is not None and moved.event.action == "rollback"
        assert moved.event.to_version == 1
        await wait_for_text(pilot, "champion=v1")


async def test_nothing_to_roll_back_to_is_said_and_nothing_is_asked(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="models")
    posted = Posted()
    async with app.run_test(size=(120, 40), message_hook=posted) as pilot:
        await wait_for_message(pilot, posted, VersionsLoaded)
        await pilot.press("r")
        failed = await wait_for_message(pilot, posted, BackendFailed)
        assert failed.error.title == "Nothing to roll back to"  # type: ignore[union-attr]
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "said so")
        assert not posted.of(AliasRollbackPlanned)
        assert not any(c[0] == "rollback" for c in fake.calls)


async def test_history(make_app: Any) -> None:
    app = make_app(start_mode="models")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(app, pilot)
        await pilot.press("h")
        await wait_until(pilot, lambda: isinstance(app.screen, AliasHistoryScreen), "history")
        text = await wait_for_text(pilot, "1 moves")
        assert "promote" in text and "ana" in text


async def test_read_only_hides_and_refuses_moves(make_app: Any, fake: FakeBackends) -> None:
    app = make_app(start_mode="models", read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_models(app, pilot)
        shown = {b.binding.action for b in app.screen.active_bindings.values()}
        assert "history" in shown and "promote" not in shown and "rollback" not in shown
        await pilot.press("p", "r")
        await pilot.pause(0.2)
        assert isinstance(app.screen, ModelsScreen)
        assert any("read-only" in n.message for n in app._notifications)
        assert not any(c[0] in ("promote", "rollback") for c in fake.calls)
        await app.screen.run_action("promote")  # e.g. from the palette: refused too
        assert not any(c[0] == "promote" for c in fake.calls)


def _policy(passed: bool) -> PolicyReport:
    fairness = PolicyCheck(
        "accuracy difference between groups of group ≤ 0.1",
        "fairness",
        "accuracy",
        0.04 if passed else 0.31,
        0.1,
        0.01 if passed else 0.22,
        0.07 if passed else 0.4,
        "pass" if passed else "fail",
        900,
        "group=A 0.91 (n=755), group=B 0.60 (n=145)",
    )
    floor = PolicyCheck("accuracy ≥ 0.75", "floor", "accuracy", 0.86, 0.75, 0.83, 0.89, "pass", 900)
    return PolicyReport(
        policy="gate.yaml of run abc",
        dataset="the held-out split loans-held-out of run abc",
        digest="5d1f00aa",
        rows=900,
        resamples=200,
        confidence=0.95,
        champion_version=1,
        checks=(floor, fairness),
        worst_slices=(SliceFigure("group=B", 145, "accuracy", 0.6),),
        unjudged=(),
        undecided_passes=False,
        passed=passed,
    )


async def test_the_promote_dialog_shows_the_policy_report_before_confirming(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.policy_report = _policy(passed=True)
    app = make_app(start_mode="models")
    async with app.run_test(size=(140, 48)) as pilot:
        await open_models(app, pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        body = app.screen.body
        assert "policy: PASSED" in body and "held-out split loans-held-out" in body
        assert "digest 5d1f00aa" in body and "compared with version 1" in body
        assert "worst slices: group=B 0.6 (n=145)" in body
        # Every check, with its figure and interval, before the person confirms.
        assert "pass accuracy ≥ 0.75: 0.86 [0.83, 0.89]" in body
        assert "pass accuracy difference between groups of group ≤ 0.1: 0.04 [0.01, 0.07]" in body
        assert [c[0] for c in fake.calls if c[0] in ("validate", "promote")] == ["validate"]
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageModal), "gate result")
        assert any(c[0] == "promote" for c in fake.calls)


async def test_a_failed_policy_is_shown_and_nothing_is_asked_or_moved(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.policy_report = _policy(passed=False)
    app = make_app(start_mode="models")
    async with app.run_test(size=(140, 48)) as pilot:
        await open_models(app, pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "gate failed")
        assert app.screen.title_text == "Gate failed"
        message = app.screen.message
        assert "policy: FAILED" in message and "FAIL accuracy difference" in message
        assert "0.31 [0.22, 0.4]" in message
        assert not any(c[0] == "promote" for c in fake.calls)
        assert fake.aliases["champion"] == 1
