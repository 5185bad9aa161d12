"""Runs: rows from a worker, filter, sort, mark and compare, details, and an outage recovering."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

from console.screens.compare import CompareScreen
from console.screens.run_detail import RunDetailScreen
from console.screens.runs import RunsScreen
from tests.tui.fakes import FakeBackends
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
        assert ("list_runs", "iris", "metrics.accuracy > 0.92") in fake.calls
        assert "filter: metrics.accuracy > 0.92" in await wait_for_text(pilot, "2 runs")


async def test_sort_by_cursor_column(make_app: Any) -> None:
    app = make_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_for_text(pilot, "run-3")
        t = table(app)
        column = list(t.columns).index(next(k for k in t.columns if k.value == "m:accuracy"))
        t.move_cursor(column=column)
        await pilot.press("s")  # ascending
        await pilot.pause()
        assert [str(t.get_row_at(i)[1]) for i in range(3)] == ["run-1", "run-3", "run-2"]
        await pilot.press("s")  # descending
        await pilot.pause()
        assert [str(t.get_row_at(i)[1]) for i in range(3)] == ["run-2", "run-3", "run-1"]


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
    fake.down["mlflow"] = 2
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        text = await wait_for_text(pilot, "unreachable since")
        assert "retrying" in text
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
