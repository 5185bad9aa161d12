"""Compare: the marked runs side by side — params that differ, metrics with the best marked."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from backends.records import RunComparison
from console import format as fmt
from console.capabilities import Runs
from console.messages import BackendFailed, RunsCompared
from console.screens.base import ResourceScreen
from console.widgets.plots import series_color
from console.widgets.tables import Table


class CompareScreen(ResourceScreen):
    """Two tables (params that differ, metrics) and a metric-history plot when there is one."""

    @property
    def runs_of(self) -> Runs:
        """The one capability this screen uses."""
        return self.mlops.services.runs

    RESOURCE = "runs"
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding(
            "m", "next_metric", "Next plot", id="compare.metric", tooltip="Plot another metric"
        ),
    ]

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__()
        self.run_ids = run_ids
        self.comparison: RunComparison | None = None
        self._plotted = 0

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="compare-body"):
            yield Static("params that differ", classes="section")
            yield Table(id="compare-params", cursor_type="row")
            yield Static("metrics (★ best)", classes="section")
            yield Table(id="compare-metrics", cursor_type="row")
            yield Static("", id="compare-plot-title", classes="section")
            yield _plot_widget()

    def body_mounted(self) -> None:
        self.set_pane_status(f"comparing {len(self.run_ids)} runs…")
        self.load()

    def load(self) -> None:
        self._load(list(self.run_ids))

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare")
    def _load(self, run_ids: list[str]) -> None:
        try:
            comparison = self.runs_of.compare_runs(run_ids)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(RunsCompared(comparison))

    def on_runs_compared(self, message: RunsCompared) -> None:
        self.loaded()
        c = self.comparison = message.comparison
        names = [r.name or r.run_id[:8] for r in c.runs]
        params = self.query_one("#compare-params", DataTable)
        params.clear(columns=True)
        params.add_columns("param", *names)
        for row in c.params_differ:
            params.add_row(row.key, *(v if v is not None else "-" for v in row.values))
        metrics = self.query_one("#compare-metrics", DataTable)
        metrics.clear(columns=True)
        metrics.add_columns("metric", *names)
        for m in c.metrics:
            cells = [
                Text(f"★ {fmt.number(v)}", style="bold green")
                if i in m.best
                else Text(fmt.number(v))
                for i, v in enumerate(m.values)
            ]
            metrics.add_row(f"{m.key} ({m.direction})", *cells)
        same = {True: "same data", False: "DIFFERENT data", None: "no data sets recorded"}
        self.set_pane_status(
            f"{len(c.runs)} runs · {len(c.params_differ)} params differ, "
            f"{len(c.params_agree)} agree · {same[c.same_data]}"
        )
        self._plot()

    def action_next_metric(self) -> None:
        self._plotted += 1
        self._plot()

    def _plot(self) -> None:
        c = self.comparison
        plotted = [
            k for k, series in (c.histories if c else {}).items() if any(s.points for s in series)
        ]
        title = self.query_one("#compare-plot-title", Static)
        if c is None or not plotted:
            title.update("no metric histories to plot")
            return
        key = plotted[self._plotted % len(plotted)]
        title.update(f"history of {key} (m: next metric)")
        plot = self.query_one("#compare-plot")
        if not hasattr(plot, "plt"):
            return
        plt = plot.plt
        plt.clear_data()
        for index, (run, series) in enumerate(zip(c.runs, c.histories[key], strict=True)):
            if series.points:
                steps = [p.step for p in series.points]
                values = [p.value for p in series.points]
                marker = "hd" if len(steps) > 1 else "o"
                label = run.name or run.run_id[:8]
                plt.plot(steps, values, label=label, marker=marker, color=series_color(index))
        plt.title(key)
        plot.refresh()


def _plot_widget() -> Static:
    """A textual-plotext plot, or a placeholder where it is not installed."""
    try:
        from textual_plotext import PlotextPlot
    except ImportError:  # pragma: no cover - a declared dependency
        return Static("plotting needs textual-plotext", id="compare-plot")
    return PlotextPlot(id="compare-plot")  # type: ignore[return-value]
