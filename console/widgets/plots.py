"""Live plots of one deployment: request rate, error ratio, latency quantiles and accuracy from
labels over minutes.

Each plot remembers the lines it was given (``lines``), so tests assert on data, not pixels.
Series differ by marker and name as well as by colour, so they read in a monochrome terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from backends.records import MonitorHistory

Line = tuple[tuple[float, ...], tuple[float, ...]]  # minutes before the end, values

# Line colours in order (plotext's own sequence), set on every line: left to plotext, a line's
# colour comes from whichever theme the widget last rendered with, so it changed with timing.
SERIES_COLORS = ((0, 130, 200), (60, 180, 75), (230, 25, 75), (255, 225, 25), (245, 130, 48))


def series_color(index: int) -> tuple[int, int, int]:
    """The colour of the ``index``-th line of a plot."""
    return SERIES_COLORS[index % len(SERIES_COLORS)]


@dataclass(frozen=True)
class Trace:
    """How one figure of the history is drawn: its series, legend name, unit scale, marker."""

    series: str
    label: str
    scale: float
    marker: str


@dataclass(frozen=True)
class PlotSpec:
    """One plot: its widget id, title (with the unit) and the figures it draws."""

    id: str
    title: str
    traces: tuple[Trace, ...]
    top: float | None = None  # a fixed top of the axis (a share in %: 100)


PLOTS = (
    PlotSpec("plot-rate", "requests/s", (Trace("request_rate", "req/s", 1.0, "•"),)),
    PlotSpec("plot-errors", "5xx errors %", (Trace("error_ratio", "5xx %", 100.0, "•"),)),
    PlotSpec(
        "plot-latency",
        "latency ms",
        (
            Trace("p50", "p50", 1000.0, "•"),
            Trace("p95", "p95", 1000.0, "+"),
            Trace("p99", "p99", 1000.0, "x"),
        ),
    ),
    PlotSpec(
        "plot-quality",
        "accuracy % (labels)",
        (Trace("accuracy", "accuracy %", 100.0, "•"),),
        top=100.0,
    ),
)


def lines_of(spec: PlotSpec, history: MonitorHistory) -> dict[str, Line]:
    """The lines one plot draws from a history, x in minutes before its end (≤ 0)."""
    end = history.end.timestamp()
    lines: dict[str, Line] = {}
    for trace in spec.traces:
        points = history.points(trace.series)
        if points:
            xs = tuple((t - end) / 60 for t, _ in points)
            lines[trace.label] = (xs, tuple(v * trace.scale for _, v in points))
    return lines


class FigurePlot(PlotextPlot):
    """One plot of named lines against the minutes before now."""

    def __init__(self, spec: PlotSpec) -> None:
        super().__init__(id=spec.id, classes="figure-plot")
        self.spec = spec
        self.lines: dict[str, Line] = {}
        self.minutes = 15.0
        self.note = "waiting for data"

    def show(self, lines: dict[str, Line], minutes: float, note: str = "") -> None:
        """Draw ``lines`` (by legend name) over the last ``minutes``; ``note`` joins the title."""
        if (lines, minutes, note) == (self.lines, self.minutes, self.note):
            return  # building a plot costs milliseconds: not again for the same picture
        self.lines, self.minutes, self.note = lines, minutes, note
        self._draw()

    def on_mount(self) -> None:
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        markers = {t.label: t.marker for t in self.spec.traces}
        order = [t.label for t in self.spec.traces]
        # A legend only where several lines share a plot; a lone line is named by the title.
        legend = len(self.spec.traces) > 1
        for label, (xs, ys) in self.lines.items():
            plt.plot(
                xs,
                ys,
                marker=markers[label],
                label=label if legend else None,
                color=series_color(order.index(label)),
            )
        title = self.spec.title if not self.note else f"{self.spec.title} · {self.note}"
        plt.title(title)
        plt.xlim(-self.minutes, 0)
        ticks = [-self.minutes, -self.minutes * 2 / 3, -self.minutes / 3, 0]
        plt.xticks(ticks, [f"-{-t:g}m" if t else "now" for t in ticks])
        # Rates, ratios and latencies are never negative: the axis starts at 0, so a flat zero
        # line is not drawn mid-plot between -1 and 1, and a small wobble is not magnified.
        top = max((y for _, ys in self.lines.values() for y in ys), default=0.0)
        plt.ylim(0, self.spec.top or (top * 1.1 if top > 0 else 1))
        self.refresh()


class MonitorPlots(Horizontal):
    """The four plots of the selected deployment, side by side."""

    def compose(self) -> ComposeResult:
        for spec in PLOTS:
            yield FigurePlot(spec)

    def show_history(self, history: MonitorHistory) -> None:
        """Plot the figures of a history (a figure without points says so in its title)."""
        for plot in self.query(FigurePlot):
            lines = lines_of(plot.spec, history)
            plot.show(lines, history.minutes, "" if lines else "no data yet")

    def show_note(self, note: str) -> None:
        """Keep the lines drawn, and say why they are not fresh (or that nothing is selected)."""
        for plot in self.query(FigurePlot):
            plot.show(plot.lines, plot.minutes, note)

    def clear(self, note: str) -> None:
        """Draw nothing, saying why."""
        for plot in self.query(FigurePlot):
            plot.show({}, plot.minutes, note)
