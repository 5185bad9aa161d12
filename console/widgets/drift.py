"""The drift pane: PSI per feature against the threshold that applies to it, and its crossings.

Over-threshold is said in words and a mark ("▲ over"), not by colour alone. A feature is *over*
when its PSI exceeds the PSI threshold of its model version's drift reference — the figure the
shipped MlopsFeatureDrift alert watches too; a low KS p-value alone is shown, not offered on:
with windows of a few hundred rows it trips by chance far more often than PSI does.
"""

from __future__ import annotations

from rich.text import Text

from backends.records import DeploymentHealth, DriftThresholds, FeatureDrift
from console import format as fmt
from console.widgets.tables import Table

OVER = "▲ over"
KS_LOW = "▽ KS p low"
OK = "ok"


def psi_over(feature: FeatureDrift, thresholds: DriftThresholds) -> bool:
    """Whether the feature's PSI is above its threshold."""
    return feature.psi is not None and feature.psi > thresholds.psi


def over_threshold(row: DeploymentHealth, thresholds: DriftThresholds) -> list[FeatureDrift]:
    """The row's features over the PSI threshold, worst first."""
    over = [f for f in row.drift if psi_over(f, thresholds)]
    return sorted(over, key=lambda f: -(f.psi or 0.0))


def verdict(feature: FeatureDrift, thresholds: DriftThresholds) -> Text:
    """The status cell of one feature: a mark and a word, coloured as a second cue."""
    if psi_over(feature, thresholds):
        return Text(OVER, style="bold red")
    if feature.ks_pvalue is not None and feature.ks_pvalue < thresholds.ks_pvalue:
        return Text(KS_LOW, style="yellow")
    return Text(OK, style="green")


def summary(row: DeploymentHealth, thresholds: DriftThresholds) -> Text:
    """The health table's drift cell: over when any feature is, else ok."""
    if not row.drift:
        return Text("-")
    over = over_threshold(row, thresholds)
    if over:
        return Text(OVER, style="bold red")
    return Text(OK, style="green")


class DriftWatch:
    """Which deployments had a feature over its threshold at the last look; reports crossings."""

    def __init__(self) -> None:
        self._over: set[str] = set()

    def crossed(self, key: str, over: bool) -> bool:
        """True when ``key`` is over now and was not at the last look (first looks included)."""
        was = key in self._over
        if over:
            self._over.add(key)
        else:
            self._over.discard(key)
        return over and not was


class DriftTable(Table):
    """One deployment's features: PSI, the threshold it is held to, KS p-value, verdict."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("feature", "PSI", "threshold", "KS p", "status")

    def show(self, row: DeploymentHealth | None, thresholds: DriftThresholds) -> None:
        """Replace the rows with ``row``'s features (none when nothing is selected)."""
        self.clear()
        for f in row.drift if row else ():
            self.add_row(
                f.feature,
                fmt.number(f.psi, 3),
                f"{thresholds.psi:g}",
                fmt.number(f.ks_pvalue, 3),
                verdict(f, thresholds),
            )
