"""Runs: rows from a worker, filter, sort, mark and compare, details, and an outage recovering."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest
from textual.widgets import DataTable, Input, OptionList

from backends.errors import NotFound, Unavailable
from console.modals.message import ErrorModal
from console.screens.compare import CompareScreen
from console.screens.run_detail import RunDetailScreen
from console.screens.runs import RunsScreen
from tests.tui.fakes import FakeBackends, run
from tests.tui.helpers import wait_for_text, wait_until


def table(app: Any) -> DataTable[Any]:
    found: DataTable[Any] = app.screen.query_one("#runs-table", DataTable)
    return found


async def test_runs_show_status_duration_metrics_and_params(make_app: Any) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        text = await wait_for_text(pilot, "run-2")
        for expected in ("FINISHED", "42s", "accuracy", "0.95", "n_estimators", "200", "3 runs"):
            assert expected in text


async def test_slash_filters_through_the_backend(make_app: Any, fake: FakeBackends) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("slash", *"metrics.accuracy > 0.92", "enter")
        await wait_until(pilot, lambda: table(app).row_count == 2, "filtered rows")
        assert ("list_runs", "iris", "metrics.accuracy > 0.92", (), 0) in fake.calls
        assert "filter: metrics.accuracy > 0.92" in await wait_for_text(pilot, "2 runs")


def names(app: Any) -> list[str]:
    t = table(app)
    return [str(t.get_row_at(i)[1]) for i in range(t.row_count)]


async def test_sort_by_a_metric_asks_the_backend_for_every_run(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_for_text(pilot, "run-3")
        t = table(app)
        column = list(t.columns).index(next(k for k in t.columns if k.value == "m:accuracy"))
        t.move_cursor(column=column)
        await pilot.press("s")  # ascending
        await wait_until(pilot, lambda: names(app) == ["run-1", "run-3", "run-2"], "ascending")
        assert fake.calls[-1][3] == ("metrics.`accuracy` ASC",)
        await pilot.press("s")  # descending
        await wait_until(pilot, lambda: names(app) == ["run-2", "run-3", "run-1"], "descending")
        assert fake.calls[-1][3] == ("metrics.`accuracy` DESC",)
        assert "accuracy ▼" in await wait_for_text(pilot, "sorted by accuracy desc")


async def test_sort_by_duration_sorts_the_loaded_runs(make_app: Any, fake: FakeBackends) -> None:
    fake.runs = [run(i, 0.9, "10") for i in range(1, 4)]
    fake.runs[0] = replace(fake.runs[0], end_time=fake.runs[0].start_time)  # 0 s
    app = make_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_for_text(pilot, "run-3")
        t = table(app)
        t.move_cursor(
            column=list(t.columns).index(next(k for k in t.columns if k.value == "duration"))
        )
        calls = len(fake.calls)
        await pilot.press("s", "s")  # descending: the 0 s run last
        await wait_until(pilot, lambda: names(app)[-1] == "run-1", "run-1 last")
        assert not [c for c in fake.calls[calls:] if c[0] == "list_runs"]  # MLflow cannot


async def test_mark_two_and_compare(make_app: Any, fake: FakeBackends) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("c")  # nothing marked: a notice, no screen
        await pilot.pause()
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("space", "space")
        assert len(app.screen.marked) == 2
        assert str(table(app).get_row_at(0)[0]) == "✓"
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen), "compare screen")
        text = await wait_for_text(pilot, "params that differ")
        text = await wait_for_text(pilot, "★")
        assert "n_estimators" in text and "100" in text and "200" in text
        assert "★ 0.95" in text and "same data" in text
        assert fake.calls[-1][0] == "compare_runs"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), "back to runs")


async def test_enter_opens_the_runs_details(make_app: Any) -> None:
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunDetailScreen), "details")
        text = await wait_for_text(pilot, "n_estimators = 100")
        assert "git abc123" in text


async def test_unreachable_tracking_server_retries_and_recovers(
    make_app: Any, fake: FakeBackends
) -> None:
    # Down until the pane has said so, then back: which of the screen's calls (experiments,
    # runs, the index sync) meets a counted number of failures first depends on timing.
    fake.down["mlflow"] = 1_000_000
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        text = await wait_for_text(pilot, "unreachable since")
        assert "retrying" in text
        fake.down["mlflow"] = 0
        await wait_for_text(pilot, "run-1")
        assert "unreachable" not in screen_status(app)


def screen_status(app: Any) -> str:
    return str(app.screen.query_one("#pane-status").render())


async def test_a_backend_bug_is_shown_not_raised(make_app: Any, fake: FakeBackends) -> None:
    def broken(run_id: str) -> None:
        raise KeyError("status")

    fake.show_run = broken  # type: ignore[assignment,method-assign]
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "run-1")
        await pilot.press("enter")
        text = await wait_for_text(pilot, "Unexpected error")
        assert "KeyError" in text


async def test_experiments_beside_the_runs_and_picking_one(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        text = await wait_for_text(pilot, "Default")
        assert "experiments" in text and "iris" in text
        await pilot.press("e")
        options = app.screen.query_one("#experiments", OptionList)
        assert options.has_focus and options.highlighted == 0  # the current one
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: fake.calls[-1][:2] == ("list_runs", "Default"), "Default")
        assert table(app).has_focus
        await wait_for_text(pilot, "experiment Default")


async def test_a_narrow_terminal_hides_the_experiments_until_asked(make_app: Any) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_text(pilot, "run-1")
        options = app.screen.query_one("#experiments", OptionList)
        assert not options.display
        await pilot.press("e")
        assert options.display and options.has_focus
        await pilot.press("escape")  # back to the table, the list hidden again
        assert not options.display and table(app).has_focus


def many_runs(n: int) -> list[Any]:
    return [run(i, (i * 7919 % 10_000) / 10_000, str(i % 300)) for i in range(1, n + 1)]


async def test_ten_thousand_runs_are_paged_in_as_the_cursor_goes(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.runs = many_runs(10_000)
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        text = await wait_for_text(pilot, "200 of 10,000 runs")
        assert "run-1\n" in text and "run-201\n" not in text
        assert table(app).row_count == 200  # one page, not 10,000 rows
        await pilot.press("G")  # to the last loaded row: the next page comes in
        await wait_until(pilot, lambda: table(app).row_count == 400, "second page")
        assert fake.calls[-1][-1] == 200  # offset
        assert "400 of 10,000 runs" in await wait_for_text(pilot, "400 of")
        for _ in range(3):
            rows = table(app).row_count
            await pilot.press("G")
            await wait_until(pilot, lambda rows=rows: table(app).row_count == rows + 200, "page")
        assert len(set(names(app))) == 1000  # no page twice


async def test_filter_keystrokes_answer_while_a_slow_listing_loads(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.runs = many_runs(10_000)
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "200 of 10,000 runs")
        fake.list_delay = 2.0  # every listing now takes 2 s (a slow tracking server)
        await pilot.press("ctrl+r", "slash", *"metrics.acc")
        prompt = app.screen.query_one("#runs-prompt", Input)
        assert prompt.value == "metrics.acc"  # typed while the listing is still on its way
        assert "loading" in screen_status(app) or "200 of" in screen_status(app)


async def test_a_late_page_of_an_old_listing_is_dropped(make_app: Any, fake: FakeBackends) -> None:
    fake.runs = many_runs(1_000)
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "200 of 1,000 runs")
        fake.list_delay = 0.5
        await pilot.press("G")  # asks for page two, which takes 0.5 s
        await pilot.press("slash", *"metrics.accuracy > 0.92", "enter")  # a new listing
        await wait_until(pilot, lambda: "filter:" in screen_status(app), "filtered", 10)
        await pilot.pause(0.8)
        rows = names(app)
        assert len(rows) == table(app).row_count <= 200
        assert all(r.metrics["accuracy"] > 0.92 for r in fake.runs if r.name in rows)


async def test_a_cold_index_answers_from_the_server_then_builds_in_the_background(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.index_cold, fake.sync_gate = True, threading.Event()  # the build held open
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        text = await wait_for_text(pilot, "run-1")  # first rows before the index exists
        assert "server" in text and "indexing all runs" in text
        await wait_until(pilot, lambda: ("sync_runs", "iris") in fake.calls, "background sync")
        fake.sync_gate.set()
        await wait_until(pilot, lambda: " index " in screen_status(app), "listed from the index")
        assert "indexing" not in screen_status(app)
        assert [c for c in fake.calls if c[0] == "sync_runs"] == [("sync_runs", "iris")]


async def test_a_failed_page_is_shown_and_paging_goes_on(make_app: Any, fake: FakeBackends) -> None:
    fake.runs = many_runs(1_000)
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "200 of 1,000 runs")
        # The next page fails once (not `down`: the experiment list or the index sync, which
        # may still be on their way, would take that failure instead).
        fake.failing["list_runs"] = Unavailable("connection refused", title="MLflow unreachable")
        await pilot.press("G")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen), "back")
        await pilot.press("up", "G")  # move again: the page is asked for again
        await wait_until(pilot, lambda: table(app).row_count >= 400, "second page")


async def test_switching_experiment_while_an_index_builds(
    make_app: Any, fake: FakeBackends
) -> None:
    # iris's index build is held open until Default has asked for its own (a fixed delay
    # raced the switch on a loaded machine: ci24).
    fake.index_cold, fake.sync_gate = True, threading.Event()
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "indexing all runs")
        await wait_for_text(pilot, "Default")  # the experiments are listed: down reaches it
        await pilot.press("e", "down", "enter")  # Default, while iris's index still builds
        await wait_until(pilot, lambda: ("sync_runs", "Default") in fake.calls, "its own sync")
        fake.sync_gate.set()
        await wait_until(pilot, lambda: " index " in screen_status(app), "listed from the index")
        assert "experiment Default" in screen_status(app)


async def test_an_unknown_experiment_still_lists_the_others_to_pick(
    make_app: Any, fake: FakeBackends, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "no-such-experiment")
    real = fake.list_runs

    def only_known(experiment: str, *args: Any, **kwargs: Any) -> Any:
        if experiment == "no-such-experiment":
            raise NotFound("no experiment named 'no-such-experiment'")
        return real(experiment, *args, **kwargs)

    fake.list_runs = only_known  # type: ignore[method-assign]
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for_text(pilot, "no experiment named 'no-such-experiment'")
        await wait_for_text(pilot, "Default")  # the list to pick from
        await pilot.press("e", "down", "enter")
        await wait_for_text(pilot, "experiment iris · 3 runs")
