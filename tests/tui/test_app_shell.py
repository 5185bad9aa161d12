"""The frame: context bar, jump bar, help, palette commands, status bar probes, quitting."""

from __future__ import annotations

from typing import Any

import pytest

from console.modals.help import HelpModal
from console.modals.jump import resolve
from console.screens.models import ModelsScreen
from console.screens.runs import RunsScreen
from console.widgets.context_bar import ContextBar
from console.widgets.status_bar import StatusBar
from tests.tui.fakes import FakeBackends, deployment
from tests.tui.helpers import wait_for_text, wait_until


async def test_opens_on_runs_with_context_and_quits(make_app: Any) -> None:
    app = make_app(read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, RunsScreen)
        assert app.sub_title == "context: staging [read-only]"
        bar = app.screen.query_one(ContextBar)
        assert "context: staging" in str(bar.render()) and "read-only" in str(bar.render())
        assert not bar.has_class("production")
        await pilot.press("q")
    assert app.return_code == 0


async def test_production_context_is_red(make_app: Any) -> None:
    app = make_app(context="prod")
    async with app.run_test(size=(80, 24)):
        bar = app.screen.query_one(ContextBar)
        assert bar.has_class("production")
        assert "PRODUCTION" in str(bar.render())


async def test_colon_jumps_between_resources(make_app: Any) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("colon", *"models", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen), "models screen")
        await wait_for_text(pilot, "champion=v1")
        await pilot.press("colon", *"nope", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ModelsScreen)
        await pilot.press("colon", *"runs", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), "runs screen")


def test_jump_names_resolve() -> None:
    assert resolve(":deploy") == "deploy"
    assert resolve("deployments") == "deploy"
    assert resolve("mon") == "monitor"
    assert resolve("model") == "models"
    assert resolve("x") is None


async def test_question_mark_lists_the_screens_keys(make_app: Any) -> None:
    app = make_app(start_mode="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpModal), "help")
        text = "\n".join(str(k) for k in app.screen.keys)
        assert "Promote" in text and "History" in text and "Jump" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen), "help closed")


async def test_palette_commands_are_resource_verb_and_hide_mutations_read_only(
    make_app: Any,
) -> None:
    from console.commands import MlopsCommands

    for read_only, expected in ((False, True), (True, False)):
        app = make_app(read_only=read_only)
        async with app.run_test(size=(100, 30)):
            provider = MlopsCommands(app.screen)
            names = [c.name for c in provider._commands()]
            assert "runs: open" in names and "models: alias history" in names
            assert all(": " in n for n in names)
            assert ("models: promote" in names) is expected


async def test_palette_command_switches_and_runs_the_action(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.run_command("models", None)
        await wait_for_text(pilot, "champion=v1")
        await app.run_command("models", "history")
        await wait_for_text(pilot, "alias history of iris")


async def test_palette_command_runs_its_action_on_a_screen_opened_for_it(
    make_app: Any, fake: FakeBackends
) -> None:
    """The screen's body (and so its actions) arrives a frame after the screen itself."""
    fake.deployments = [deployment()]
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_text(pilot, "3 runs")
        await app.run_command("deploy", "filter")
        await pilot.press(*"prod")
        await wait_for_text(pilot, "filter: prod")


async def test_unreachable_backend_shows_since_when_then_recovers(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.probe_down["docker"] = 3
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        bar = app.screen.query_one(StatusBar)
        await wait_until(pilot, lambda: "Docker unreachable since" in str(bar.render()), "down")
        assert "MLflow connected" in str(bar.render())
        await wait_until(pilot, lambda: "Docker connected" in str(bar.render()), "recovered")
        assert app.backend_status["docker"].down_since is None


async def test_status_bar_fits_80_columns_when_everything_is_down(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.probe_down.update(mlflow=100, docker=100, metrics=100)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        bar = app.screen.query_one(StatusBar)
        await wait_until(pilot, lambda: str(bar.render()).count("✗") == 3, "all down")
        assert bar.render().cell_len <= 80


async def test_a_theme_from_the_settings_and_an_unknown_one_named(make_app: Any) -> None:
    app = make_app(theme="nord")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "nord"
    app = make_app(theme="no-such-theme")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme == "textual-dark"
        assert any("no theme 'no-such-theme'" in n.message for n in app._notifications)


async def test_no_screen_makes_textual_reparse_every_stylesheet(
    make_app: Any, fake: FakeBackends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One stylesheet read at start (app.tcss): a screen with its own CSS_PATH, or a new mode
    screen left at Textual's initial CSS count, re-parses all of them (three times for a new
    mode: ~40 ms of the first paint here)."""
    from textual.css.stylesheet import Stylesheet

    reparsed: list[str] = []
    original = Stylesheet.reparse

    def reparse(self: Stylesheet) -> None:
        reparsed.append(app.current_mode)
        original(self)

    monkeypatch.setattr(Stylesheet, "reparse", reparse)
    fake.deployments = [deployment()]
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "3 runs")
        for mode, text in (("models", "champion=v1"), ("deploy", "iris-prod"), ("monitor", "p99")):
            await app.switch_mode(mode)
            await wait_for_text(pilot, text)
        await pilot.press("question_mark")  # a dialog too
        await pilot.pause(0.1)
    assert reparsed == []


async def test_another_start_mode_does_not_build_the_runs_screen(
    make_app: Any, fake: FakeBackends
) -> None:
    """`mlops quickstart` opens on the monitor: no runs listing (nor its index sync) behind it."""
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "p99")
        await pilot.pause(0.3)
        assert app.current_mode == "monitor"
        assert not any(c[0] in ("list_runs", "sync_runs") for c in fake.calls)


async def test_a_palette_command_does_not_act_under_a_screen_opened_from_the_list(
    make_app: Any, fake: FakeBackends
) -> None:
    from console.screens.compare import CompareScreen

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "3 runs")
        await pilot.press("space", "space", "c")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), "compare")
        await app.run_command("runs", "filter")  # the runs list's, with compare on top
        await pilot.pause(0.1)
        assert isinstance(app.screen, CompareScreen)
        assert any("back to the runs list" in n.message for n in app._notifications)


async def test_ctx_switches_every_pane_to_the_other_contexts_backends(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from console.app import MlopsApp
    from console.modals.contexts import ContextPicker
    from tests.tui.fakes import run, services, settings

    config = tmp_path / "config.toml"
    config.write_text(
        'current_context = "staging"\n'
        '[contexts.staging]\ntracking_uri = "http://staging:5000"\n'
        '[contexts.prod]\ntracking_uri = "http://prod:5000"\n'
    )
    monkeypatch.setenv("MLOPS_CONFIG", str(config))
    for variable in ("MLFLOW_TRACKING_URI", "MLOPS_CONTEXT", "MLOPS_READ_ONLY"):
        monkeypatch.delenv(variable, raising=False)
    staging, prod = FakeBackends(), FakeBackends(runs=[run(7, 0.99, "700")])
    made: list[str] = []  # os.environ and the context state are restored by conftest

    def services_for(s: Any) -> Any:
        made.append(s.tracking_uri)
        return services(prod if s.context == "prod" else staging)

    app = MlopsApp(
        settings(tracking_uri="http://staging:5000"),
        services_for=services_for,
        probe_interval=0.05,
        probe_delay=0,
        retry_base=0.05,
        refresh_interval=0.1,
    )
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "run-3")
        await pilot.press("colon", *"ctx", "enter")  # the picker: the file's contexts
        await wait_until(pilot, lambda: isinstance(app.screen, ContextPicker), "picker")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), "runs again")
        await pilot.press("colon", *"ctx prod", "enter")
        await wait_until(pilot, lambda: app.settings.context == "prod", "switched")
        await wait_for_text(pilot, "run-7")  # the runs pane reloaded from prod's backends
        assert isinstance(app.screen, RunsScreen)
        assert app.sub_title == "context: prod [read-only]"  # prod* defaults to read-only
        assert "PRODUCTION" in str(app.screen.query_one(ContextBar).render())
        assert os.environ["MLFLOW_TRACKING_URI"] == "http://prod:5000"
        await pilot.press("colon", *"models", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelsScreen), "models")
        await pilot.press("colon", *"ctx nope", "enter")  # refused, nothing changes
        await wait_until(
            pilot,
            lambda: any("no context 'nope'" in n.message for n in app._notifications),
            "the refusal",
        )
        assert app.settings.context == "prod" and isinstance(app.screen, ModelsScreen)
        await pilot.press("colon", *"ctx staging", "enter")
        await wait_until(pilot, lambda: app.settings.context == "staging", "back")
        assert isinstance(app.screen, ModelsScreen)
        assert not app.settings.read_only
    assert made == ["http://staging:5000", "http://prod:5000", "http://staging:5000"]


async def test_ctx_keeps_a_command_line_read_only_and_takes_one_switch_at_a_time(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from console.app import MlopsApp
    from tests.tui.fakes import services, settings

    config = tmp_path / "config.toml"
    config.write_text(
        '[contexts.staging]\ntracking_uri = "http://staging:5000"\n'
        '[contexts.dev]\ntracking_uri = "http://dev:5000"\n'
    )
    monkeypatch.setenv("MLOPS_CONFIG", str(config))
    for variable in ("MLFLOW_TRACKING_URI", "MLOPS_CONTEXT", "MLOPS_READ_ONLY"):
        monkeypatch.delenv(variable, raising=False)
    app = MlopsApp(
        settings(read_only=True),
        services_for=lambda s: services(FakeBackends()),
        pinned_read_only=True,  # `mlops --read-only`
        probe_delay=0,
        refresh_interval=0.1,
    )
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "run-3")
        app.choose_context("dev")
        app.choose_context("staging")  # while dev's switch runs: refused, said
        await wait_until(pilot, lambda: app.settings.context == "dev", "switched")
        await wait_until(pilot, lambda: not app._switching, "the switch ended")
        assert any("under way" in n.message for n in app._notifications)
        assert app.settings.read_only and app.sub_title == "context: dev [read-only]"
