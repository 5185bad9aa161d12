"""`/` narrows the Models and Deployments lists as you type (k9s); esc clears, then goes back."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from backends.records import ModelVersion, RegisteredModel
from console.modals.confirm import ConfirmModal
from console.screens.deployments import DeploymentsScreen
from console.screens.models import ModelsScreen
from tests.tui.fakes import T0, FakeBackends, deployment, services, version
from tests.tui.helpers import wait_for_text, wait_until


@dataclass
class ThreeModels(FakeBackends):
    """iris (champion v1, two versions), and wine and iris-large with one version each."""

    def list_models(self) -> list[RegisteredModel]:
        others = [RegisteredModel(name, "", {}, {}, 1, T0, T0) for name in ("iris-large", "wine")]
        return [*super().list_models(), *others]

    def versions(self, model: str) -> list[ModelVersion]:
        if model == "iris":
            return super().versions(model)
        self.calls.append(("versions", model))
        return [replace(version(1), name=model, metrics={"accuracy": 0.5})]


@pytest.fixture
def fake() -> FakeBackends:
    return ThreeModels(
        deployments=[
            deployment("iris-prod"),
            replace(deployment("wine-canary"), model="wine", alias="challenger", port=8081),
        ]
    )


def rows(app: Any, table_id: str) -> list[str]:
    table = app.screen.query_one(table_id, DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


def status(app: Any) -> str:
    return str(app.screen.query_one("#pane-status").render())


async def test_typing_narrows_the_models_and_their_versions_follow(
    make_app: Any, fake: ThreeModels
) -> None:
    app = make_app(start_mode="models")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen), "models")
        await wait_for_text(pilot, "3 registered models")
        assert rows(app, "#models-table") == ["iris", "iris-large", "wine"]
        await pilot.press("slash", "w", "i")
        await wait_until(pilot, lambda: rows(app, "#models-table") == ["wine"], "only wine")
        assert "1 of 3 registered models · filter: wi" in status(app)
        # The selection moved to the one match, and the versions shown are its own.
        await wait_until(pilot, lambda: app.screen.model == "wine", "wine selected")
        await wait_until(pilot, lambda: "0.5" in rows_text(app), "wine's versions")
        await pilot.press("enter")  # back to the list, the filter kept
        assert app.screen.focused is app.screen.query_one("#models-table")
        assert rows(app, "#models-table") == ["wine"]
        await pilot.press("p")  # promote acts on the filtered list's selection
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "confirm")
        assert "'wine'" in app.screen.body
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen), "back")
        await pilot.press("escape")  # clears the filter, stays on the screen
        await wait_until(pilot, lambda: len(rows(app, "#models-table")) == 3, "all again")
        assert app.screen.query_one("#row-filter", Input).has_class("hidden")
        assert app.screen.model == "wine"  # the selection stays where it was
        assert "3 registered models" in status(app)


async def test_a_filter_that_matches_nothing_empties_both_tables(
    make_app: Any, fake: ThreeModels
) -> None:
    app = make_app(start_mode="models")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "3 registered models")
        await pilot.press("slash", *"zzz")
        await wait_for_text(pilot, "0 of 3 registered models")
        assert rows(app, "#models-table") == [] and rows(app, "#versions-table") == []
        await pilot.press("enter")
        await pilot.press("p")  # nothing selected: refused out loud, nothing asked
        await pilot.pause(0.1)
        assert not isinstance(app.screen, ConfirmModal)


async def test_aliases_match_too(make_app: Any, fake: ThreeModels) -> None:
    app = make_app(start_mode="models")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "3 registered models")
        await pilot.press("slash", *"champ")
        await wait_until(pilot, lambda: rows(app, "#models-table") == ["iris"], "iris only")


async def test_the_deployments_filter_survives_refreshes(make_app: Any, fake: ThreeModels) -> None:
    app = make_app(start_mode="deploy")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, DeploymentsScreen), "deploy")
        await wait_for_text(pilot, "2 deployments")
        await pilot.press("slash", *"challenger", "enter")
        await wait_until(pilot, lambda: rows(app, "#deploy-table") == ["wine-canary"], "one")
        count = sum(1 for c in fake.calls if c[0] == "list_deployments")
        await wait_until(
            pilot,
            lambda: sum(1 for c in fake.calls if c[0] == "list_deployments") > count + 2,
            "refreshes",
        )
        assert rows(app, "#deploy-table") == ["wine-canary"]
        assert "1 of 2 deployments · filter: challenger" in status(app)
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(rows(app, "#deploy-table")) == 2, "cleared")
        assert isinstance(app.screen, DeploymentsScreen)


def rows_text(app: Any) -> str:
    table = app.screen.query_one("#versions-table", DataTable)
    return " ".join(str(c) for i in range(table.row_count) for c in table.get_row_at(i))


async def test_the_monitor_watches_what_the_filter_leaves(make_app: Any) -> None:
    from tests.tui.test_monitor_screen import TwoDeployments

    fake = TwoDeployments()
    app = make_app(start_mode="monitor")
    app.services = services(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "drift of iris-canary")  # the first row is selected
        await pilot.press("slash", *"prod", "enter")
        await wait_for_text(pilot, "drift of iris-prod")  # the one row left is now the selected
        assert app.screen.selected == "iris-prod"
        assert "1 shown · filter: prod" in status(app)
        await wait_until(
            pilot, lambda: ("monitor_history", "iris-prod", 15.0) in fake.calls, "plot"
        )
        count = sum(1 for c in fake.calls if c[0] == "monitor")
        await wait_until(
            pilot, lambda: sum(1 for c in fake.calls if c[0] == "monitor") > count + 2, "refreshes"
        )
        assert rows(app, "#health-table") == ["iris-prod"]
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(rows(app, "#health-table")) == 2, "both again")
        assert app.screen.selected == "iris-prod"  # the selection stays where it was


@dataclass
class SlowWine(ThreeModels):
    """wine's versions take a while to arrive."""

    def versions(self, model: str) -> list[ModelVersion]:
        if model == "wine":
            time.sleep(0.5)
        return super().versions(model)


async def test_no_key_acts_on_the_last_models_versions_while_the_new_ones_load(
    make_app: Any,
) -> None:
    fake = SlowWine()
    app = make_app(start_mode="models")
    app.services = services(fake)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "0.92")  # iris's versions
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        # As the filter does when it leaves only wine; the keys' own pace would let the slow
        # answer arrive first, so the selection and the promote are made in one go here.
        screen._select("wine")
        assert screen.versions == [] and rows(app, "#versions-table") == []  # iris's are gone
        screen.action_promote()  # not "promote wine to version 2" from iris's list
        await pilot.pause(0.05)
        assert not isinstance(app.screen, ConfirmModal)
        await wait_until(pilot, lambda: rows(app, "#versions-table") == ["v1"], "wine's v1")
