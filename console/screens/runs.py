"""Runs: the runs of an experiment, filtered with MLflow syntax, marked and compared."""

from __future__ import annotations

import os
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input

from backends.errors import NotFound
from backends.records import RunListing, RunSummary
from console import format as fmt
from console.messages import BackendFailed, RunsLoaded
from console.screens.base import ResourceScreen

DEFAULT_EXPERIMENT = "iris"  # what `mlops train` names the example project's experiment
FALLBACK_EXPERIMENT = "Default"
KEY_COLUMNS = 4  # metrics and params shown as columns, each


class RunsScreen(ResourceScreen):
    """A DataTable of runs; `/` filter, `e` experiment, `s` sort, `space` mark, `c` compare."""

    CSS_PATH = "runs.tcss"
    RESOURCE = "runs"
    MUTATING: ClassVar[dict[str, str]] = {"train": "training"}
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("slash", "filter", "Filter", id="runs.filter", tooltip="MLflow filter expression"),
        Binding("e", "experiment", "Experiment", id="runs.experiment", tooltip="Pick experiment"),
        Binding("s", "sort", "Sort", id="runs.sort", tooltip="Sort by the cursor's column"),
        Binding("space", "mark", "Mark", id="runs.mark", tooltip="Mark the run for compare"),
        Binding("c", "compare", "Compare", id="runs.compare", tooltip="Compare the marked runs"),
        Binding("t", "train", "Train", id="runs.train", tooltip="Launch a training"),
        Binding("enter", "details", "Details", id="runs.details", tooltip="The run's details"),
        Binding("ctrl+r", "reload", "Reload", id="runs.reload", tooltip="Load the runs again"),
        Binding("escape", "close_prompt", "Back", id="runs.escape", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        chosen = os.environ.get("MLFLOW_EXPERIMENT_NAME")
        self.experiment = chosen or DEFAULT_EXPERIMENT
        # Without a choice, a store that never ran `mlops train` still shows its Default runs.
        self._fallback: str | None = None if chosen else FALLBACK_EXPERIMENT
        self.filter_string = ""
        self.marked: set[str] = set()
        self.runs: list[RunSummary] = []
        self._sort: tuple[str, bool] | None = None
        self._prompt = "filter"

    def compose_body(self) -> ComposeResult:
        yield Input(id="runs-prompt", classes="hidden")
        table: DataTable[str] = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield table

    def on_mount(self) -> None:
        self.query_one("#runs-table", DataTable).focus()
        self.set_pane_status(f"experiment {self.experiment}: loading…")
        self.call_after_refresh(self.load)  # mlflow's import must not delay the first frame

    def load(self) -> None:
        self._load(self.experiment, self.filter_string, self._fallback)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def _load(self, experiment: str, filter_string: str, fallback: str | None) -> None:
        backends = self.mlops.backends
        try:
            try:
                listing = backends.list_runs(experiment, filter_string, [])
            except NotFound:
                if fallback is None:
                    raise
                listing = backends.list_runs(fallback, filter_string, [])
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(RunsLoaded(listing))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.loaded()
        self.experiment = message.listing.experiment_name
        self._fallback = None
        self.runs = list(message.listing.runs)
        self._show(message.listing)

    def _show(self, listing: RunListing | None = None) -> None:
        table = self.query_one("#runs-table", DataTable)
        metric_keys = _top_keys(r.metrics for r in self.runs)
        param_keys = _top_keys(r.params for r in self.runs)
        rows = list(self.runs)
        if self._sort is not None:
            column, reverse = self._sort
            rows.sort(key=lambda r: _sort_key(r, column), reverse=reverse)
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        table.add_column("✓", key="mark", width=1)
        table.add_column("run", key="name")
        table.add_column("id", key="id")
        table.add_column("status", key="status")
        table.add_column("duration", key="duration")
        for key in metric_keys:
            table.add_column(key, key=f"m:{key}")
        for key in param_keys:
            table.add_column(key, key=f"p:{key}")
        table.add_column("started", key="started")
        for run in rows:
            table.add_row(
                "✓" if run.run_id in self.marked else "",
                run.name,
                run.run_id[:8],
                run.status,
                fmt.duration(run.duration_seconds),
                *(fmt.number(run.metrics.get(k)) for k in metric_keys),
                *(run.params.get(k, "-") for k in param_keys),
                fmt.when(run.start_time),
                key=run.run_id,
            )
        if rows:
            table.move_cursor(
                row=min(cursor.row, len(rows) - 1),
                column=min(cursor.column, len(table.columns) - 1),
                animate=False,
            )
        if listing is not None:
            count = f"{len(self.runs)}" + (" (more match)" if listing.more else "")
            where = f"  filter: {self.filter_string}" if self.filter_string else ""
            self.set_pane_status(
                f"experiment {listing.experiment_name} · {count} runs · {listing.source}{where}"
            )

    # ------------------------------------------------------------------ actions

    def action_reload(self) -> None:
        self.load()

    def action_filter(self) -> None:
        self._open_prompt(
            "filter", self.filter_string, "metrics.accuracy > 0.9 and params.seed = '7'"
        )

    def action_experiment(self) -> None:
        self._open_prompt("experiment", self.experiment, "experiment name or id")

    def _open_prompt(self, kind: str, value: str, placeholder: str) -> None:
        self._prompt = kind
        prompt = self.query_one("#runs-prompt", Input)
        prompt.placeholder = f"{kind}: {placeholder}"
        prompt.value = value
        prompt.remove_class("hidden")
        prompt.focus()

    @on(Input.Submitted, "#runs-prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        if self._prompt == "filter":
            self.filter_string = event.value.strip()
        else:
            self.experiment = event.value.strip() or self.experiment
            self._fallback = None
            self.marked.clear()
        event.input.add_class("hidden")
        self.query_one("#runs-table", DataTable).focus()
        self.set_pane_status(f"experiment {self.experiment}: loading…")
        self.load()

    async def action_close_prompt(self) -> None:
        prompt = self.query_one("#runs-prompt", Input)
        if prompt.has_class("hidden"):
            await self.app.action_back()
            return
        prompt.add_class("hidden")
        self.query_one("#runs-table", DataTable).focus()

    def on_descendant_blur(self, event: object) -> None:
        prompt = self.query_one("#runs-prompt", Input)
        if not prompt.has_focus:
            prompt.add_class("hidden")

    def action_sort(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        if not table.columns:
            return
        column = str(list(table.columns)[table.cursor_column].value)
        if column == "mark":
            return
        reverse = self._sort == (column, False)
        self._sort = (column, reverse)
        self._show()
        self.notify(f"sorted by {column} {'descending' if reverse else 'ascending'}")

    def _current_run(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_mark(self) -> None:
        run_id = self._current_run()
        if run_id is None:
            return
        self.marked.symmetric_difference_update({run_id})
        table = self.query_one("#runs-table", DataTable)
        table.update_cell(run_id, "mark", "✓" if run_id in self.marked else "")
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark at least two runs with space first", severity="warning")
            return
        from console.screens.compare import CompareScreen

        ordered = [r.run_id for r in self.runs if r.run_id in self.marked]
        self.app.push_screen(CompareScreen(ordered))

    def action_train(self) -> None:
        if self.refuse_if_read_only("train"):
            return
        from console.screens.train import TrainScreen

        self.app.push_screen(TrainScreen())

    def action_details(self) -> None:
        run_id = self._current_run()
        if run_id is None:
            return
        from console.screens.run_detail import RunDetailScreen

        self.app.push_screen(RunDetailScreen(run_id))

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_details()


def _top_keys(dicts: object, limit: int = KEY_COLUMNS) -> list[str]:
    """The keys most runs have, most common first (ties by name)."""
    counts: dict[str, int] = {}
    for d in dicts:  # type: ignore[attr-defined]
        for key in d:
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:limit]


def _sort_key(run: RunSummary, column: str) -> tuple[int, float, str]:
    """Missing values last; numbers as numbers."""
    value: object
    if column.startswith("m:"):
        value = run.metrics.get(column[2:])
    elif column.startswith("p:"):
        raw = run.params.get(column[2:])
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            value = raw
    elif column == "duration":
        value = run.duration_seconds
    elif column == "started":
        value = run.start_time.timestamp() if run.start_time else None
    elif column == "id":
        value = run.run_id
    else:
        value = getattr(run, column, None)
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value))
