"""Runs: experiments beside their runs, filtered with MLflow syntax, paged in, marked, compared."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, OptionList

from backends.errors import NotFound
from console import format as fmt
from console.messages import BackendFailed, RunIndexSynced, RunsLoaded
from console.screens.runs_columns import order_term, sort_key, top_keys
from console.screens.runs_experiments import ExperimentsPane
from console.services.runs import RUNS_PAGE
from console.widgets.tables import Table

if TYPE_CHECKING:
    from backends.records import RunListing, RunSummary

DEFAULT_EXPERIMENT = "iris"  # what `mlops train` names the example project's experiment
FALLBACK_EXPERIMENT = "Default"
PREFETCH = 50  # the next page is asked for when the cursor is this close to the last row


class RunsScreen(ExperimentsPane):
    """Experiments on the left, their runs in a paged table; `/` filter, `s` sort, `c` compare."""

    RESOURCE = "runs"
    MUTATING: ClassVar[dict[str, str]] = {"train": "training"}
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("slash", "filter", "Filter", id="runs.filter", tooltip="MLflow filter expression"),
        Binding("e", "experiments", "Experiments", id="runs.experiment", tooltip="Pick one"),
        Binding("s", "sort", "Sort", id="runs.sort", tooltip="Sort by the cursor's column"),
        Binding("space", "mark", "Mark", id="runs.mark", tooltip="Mark the run for compare"),
        Binding("c", "compare", "Compare", id="runs.compare", tooltip="Compare the marked runs"),
        Binding("t", "train", "Train", id="runs.train", tooltip="Launch a training"),
        Binding("enter", "details", "Details", id="runs.details", tooltip="The run's details"),
        Binding("ctrl+r", "reload", "Reload", id="runs.reload", tooltip="Load the runs again"),
        Binding("escape", "close_prompt", "Back", id="runs.escape", show=False),
        # k9s/vim: G to the last loaded row (which asks for the next page), g to the first.
        Binding("G", "last_row", "Last row", id="runs.last", show=False),
        Binding("g", "first_row", "First row", id="runs.first", show=False),
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
        self.listing: RunListing | None = None
        self._order: tuple[str, bool] | None = None  # (column key, descending)
        self._local_sort = False  # sorted in memory: the index cannot order by that column
        self._generation = 0
        self._paging = False
        self._syncing: set[str] = set()  # experiments whose index builds in the background
        self._reload_on_resume = False
        self._experiments_state = "none"  # none → asked → loaded (back to none when it fails)
        self._metric_keys: list[str] = []
        self._param_keys: list[str] = []
        self._sidebar_chosen: bool | None = None  # the user's `e` toggle wins over the width

    def compose_body(self) -> ComposeResult:
        yield Input(id="runs-prompt", classes="hidden")
        with Horizontal(id="runs-body"):
            # Hidden until the experiment list arrives: the first frame draws the table only.
            yield OptionList(id="experiments", classes="hidden")
            yield Table(id="runs-table", cursor_type="row", zebra_stripes=True)

    def body_mounted(self) -> None:
        self.query_one("#experiments", OptionList).border_title = "experiments"
        self.query_one("#runs-table", DataTable).focus()
        self.set_pane_status(f"experiment {self.experiment}: loading…")
        # The body paints before the first listing imports mlflow in a worker (it holds the GIL).
        self.call_after_refresh(self._first_load)

    def _first_load(self) -> None:
        self.load()  # the experiment list follows the first page (see on_runs_loaded)

    # ------------------------------------------------------------------ loading

    def load(self, quick: bool = True) -> None:
        """List again; ``quick`` shows the local index's rows at once and syncs after."""
        self._generation += 1
        self._paging = False
        self._load(self.experiment, self.filter_string, self._order_by(), self._generation, quick)

    def _order_by(self) -> list[str]:
        if self._order is None or self._local_sort:
            return []
        column, descending = self._order
        return [f"{order_term(column)} {'DESC' if descending else 'ASC'}"]

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def _load(
        self, experiment: str, filter_string: str, order: list[str], generation: int, quick: bool
    ) -> None:
        backends = self.runs_of
        try:
            try:
                listing = backends.list_runs(experiment, filter_string, order, quick=quick)
            except NotFound:
                if self._fallback is None:
                    raise
                listing = backends.list_runs(self._fallback, filter_string, order, quick=quick)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(RunsLoaded(listing, 0, generation))

    @work(thread=True, exit_on_error=False, group="runs-page")
    def _load_page(self, experiment: str, filter_string: str, order: list[str], offset: int,
                   generation: int) -> None:  # fmt: skip
        try:
            listing = self.runs_of.list_runs(experiment, filter_string, order, offset)
        except Exception as exc:
            self.post_message(BackendFailed("next page", exc))
        else:
            self.post_message(RunsLoaded(listing, offset, generation))

    @work(thread=True, exit_on_error=False, group="run-index")
    def _sync_index(self, experiment: str) -> None:
        try:
            self.runs_of.sync_runs(experiment)
        except Exception as exc:
            self.post_message(RunIndexSynced(experiment, str(exc)))
        else:
            self.post_message(RunIndexSynced(experiment))

    def on_run_index_synced(self, message: RunIndexSynced) -> None:
        self._syncing.discard(message.experiment)
        if message.error:
            self.notify(
                f"run index: {message.error}", title="Index sync failed", severity="warning"
            )
        elif message.experiment == self.experiment:
            if len(self.runs) <= RUNS_PAGE:
                self.load(quick=False)  # the same listing, from the index just synced
            else:  # the operator has paged on: do not pull the rows from under the cursor
                self.notify("run index complete: ctrl+r lists from it", title="Runs")

    def on_backend_failed(self, message: BackendFailed) -> None:
        # The base class shows the error; a failed page must not stop paging for good, and
        # an experiment that is not there leaves the list of those that are to pick from.
        if message.what == "next page":
            self._paging = False
        else:
            self._ask_experiments()

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        if message.generation != self._generation:
            return  # a page of a listing the user has moved away from
        listing = message.listing
        self.listing = listing
        if message.offset == 0:
            self._ask_experiments()
            self.loaded()
            self.experiment = listing.experiment_name
            self._fallback = None
            self.runs = list(listing.runs)
            self._highlight_current()
            self._show()
            name = listing.experiment_name
            if listing.index_pending and name not in self._syncing:
                self._syncing.add(name)
                self._sync_index(name)
        else:
            self._paging = False
            known = {r.run_id for r in self.runs}
            fresh = [r for r in listing.runs if r.run_id not in known]
            self.runs += fresh
            self._append(fresh)
        self._show_status()

    def _show(self) -> None:
        """Rebuild the table from ``self.runs`` (new listing, new order, or a local sort)."""
        table = self.query_one("#runs-table", DataTable)
        self._metric_keys = top_keys(r.metrics for r in self.runs)
        self._param_keys = top_keys(r.params for r in self.runs)
        rows = list(self.runs)
        if self._order is not None and self._local_sort:
            column, descending = self._order
            rows.sort(key=lambda r: sort_key(r, column), reverse=descending)
        columns = [("name", "run"), ("id", "id"), ("status", "status"), ("duration", "duration")]
        columns += [(f"m:{k}", k) for k in self._metric_keys]
        columns += [(f"p:{k}", k) for k in self._param_keys]
        columns += [("started", "started")]
        cells = [self._cells(run) for run in rows]
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        table.add_column("✓", key="mark", width=1)
        for key, label in columns:
            table.add_column(self._heading(label, key), key=key)
        for run, row in zip(rows, cells, strict=True):
            table.add_row(*row, key=run.run_id)
        if rows:
            table.move_cursor(
                row=min(cursor.row, len(rows) - 1),
                column=min(cursor.column, len(table.columns) - 1),
                animate=False,
            )

    def _heading(self, label: str, key: str) -> str:
        if self._order is None or self._order[0] != key:
            return label
        return f"{label} {'▼' if self._order[1] else '▲'}"

    def _cells(self, run: RunSummary) -> tuple[str, ...]:
        return (
            "✓" if run.run_id in self.marked else "",
            run.name,
            run.run_id[:8],
            run.status,
            fmt.duration(run.duration_seconds),
            *(fmt.number(run.metrics.get(k)) for k in self._metric_keys),
            *(run.params.get(k, "-") for k in self._param_keys),
            fmt.when(run.start_time),
        )

    def _append(self, runs: list[RunSummary]) -> None:
        """A further page, appended (its columns widen to a wider cell by themselves)."""
        table = self.query_one("#runs-table", DataTable)
        for run in runs:
            table.add_row(*self._cells(run), key=run.run_id)

    def _show_status(self) -> None:
        listing = self.listing
        if listing is None:
            return
        total = listing.matched
        shown = f"{len(self.runs):,}"
        count = (
            f"{shown} of {total:,} runs"
            if total is not None and listing.more
            else (f"{shown}+ runs" if listing.more else f"{shown} runs")
        )
        where = f" · filter: {self.filter_string}" if self.filter_string else ""
        order = ""
        if self._order is not None:
            column, descending = self._order
            scope = " (loaded rows)" if self._local_sort and listing.more else ""
            order = f" · sorted by {column.split(':')[-1]} {'desc' if descending else 'asc'}{scope}"
        synced = f" {listing.synced_at.astimezone():%H:%M:%S}" if listing.source == "index" else ""
        if listing.index_pending:
            building = listing.experiment_name in self._syncing
            if listing.source == "server":  # no index yet: it is being built
                synced += " · indexing all runs…" if building else " · index pending"
            else:  # the index's rows, shown before its sync with the server
                synced += " · syncing…" if building else " · sync pending"
        self.set_pane_status(
            f"experiment {listing.experiment_name} · {count} · {listing.source}{synced}"
            f"{order}{where}"
        )

    @on(DataTable.RowHighlighted, "#runs-table")
    def _maybe_next_page(self, event: DataTable.RowHighlighted) -> None:
        listing = self.listing
        if listing is None or not listing.more or self._paging or self._local_sort:
            return
        if event.cursor_row >= len(self.runs) - PREFETCH:
            self._paging = True
            self._load_page(
                self.experiment, self.filter_string, self._order_by(), len(self.runs),
                self._generation,
            )  # fmt: skip

    # ------------------------------------------------------------------ actions

    def action_reload(self) -> None:
        self.load(quick=False)
        self._experiments_state = "asked"
        self._load_experiments()

    def action_filter(self) -> None:
        self._open_prompt(self.filter_string, "metrics.accuracy > 0.9 and params.seed = '7'")

    def _open_prompt(self, value: str, placeholder: str) -> None:
        prompt = self.query_one("#runs-prompt", Input)
        prompt.placeholder = f"filter: {placeholder}"
        prompt.value = value
        prompt.remove_class("hidden")
        self.set_focus(prompt)  # at once: keys typed right after `/` are queued behind it

    @on(Input.Submitted, "#runs-prompt")
    def _prompt_submitted(self, event: Input.Submitted) -> None:
        self.filter_string = event.value.strip()
        event.input.add_class("hidden")
        self.set_focus(self.query_one("#runs-table", DataTable))  # at once: see action_filter
        self.set_pane_status(f"experiment {self.experiment}: loading…")
        self.load()

    async def action_close_prompt(self) -> None:
        prompt = self.query_one("#runs-prompt", Input)
        options = self.query_one("#experiments", OptionList)
        if not prompt.has_class("hidden"):
            prompt.add_class("hidden")
        elif options.has_focus:
            self.action_experiments()
            return
        else:
            await self.app.action_back()
            return
        self.query_one("#runs-table", DataTable).focus()

    def on_descendant_blur(self, event: object) -> None:
        if not self.body_ready:
            return
        prompt = self.query_one("#runs-prompt", Input)
        if not prompt.has_focus:
            prompt.add_class("hidden")

    def action_sort(self) -> None:
        """Sort by the cursor's column: ascending, then descending; all matching runs when the
        index can order by it, else the runs loaded so far (duration)."""
        table = self.query_one("#runs-table", DataTable)
        if not table.columns:
            return
        column = str(list(table.columns)[table.cursor_column].value)
        if column == "mark":
            return
        descending = self._order == (column, False)
        self._order = (column, descending)
        self._local_sort = order_term(column) is None
        way = "descending" if descending else "ascending"
        if self._local_sort:
            self._show()
            self._show_status()
            scope = "the loaded runs" if self.listing is not None and self.listing.more else "runs"
            self.notify(f"sorted {scope} by {column.split(':')[-1]} {way}")
        else:
            self.set_pane_status(f"experiment {self.experiment}: sorting by {column}…")
            self.load()

    def _current_run(self) -> str | None:
        table = self.query_one("#runs-table", DataTable)
        if table.row_count == 0:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_last_row(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.action_scroll_bottom()

    def action_first_row(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.action_scroll_top()

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

        self._reload_on_resume = True  # back from training: its run should be listed
        self.app.push_screen(TrainScreen())

    def on_screen_resume(self) -> None:
        if self._reload_on_resume:
            self._reload_on_resume = False
            self.load()

    def action_details(self) -> None:
        run_id = self._current_run()
        if run_id is None:
            return
        from console.screens.run_detail import RunDetailScreen

        self.app.push_screen(RunDetailScreen(run_id))

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_details()
