"""The drift window kept as counts, so an update costs the rows that moved, not the window.

Per feature, two sets of counts: the window's values per PSI bin of the reference, and per
*cell* of the reference sample — its distinct sorted values r_k and the open gaps between them
(cell 2k: between r_{k-1} and r_k; cell 2k+1: equal to r_k; the last: above every r_k). Both
empirical CDFs step only at data points and the reference's is flat between its own values, so
``ks_2samp``'s extremes over the merged samples sit at the r_k: just below r_k (the largest
F_window - F_ref) and at r_k (the largest F_ref - F_window). Cumulative cell counts give
F_window there, as the same integer divided by the same n, so the statistic is the same float
scipy computes after sorting both samples — with no sorted copy of the window to maintain.

Every feature's counts are a view into one flat array, so the statistics are computed for all
features in a few array operations; counting rows in and out is a searchsorted per feature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

PSI_FLOOR = 1e-4  # an empty bin would make PSI infinite; this is the usual floor


def _starts(lengths: list[int]) -> NDArray[np.intp]:
    return np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.intp)


def _views(flat: NDArray[np.float64], lengths: list[int]) -> list[NDArray[np.float64]]:
    return [flat[s : s + n] for s, n in zip(_starts(lengths), lengths, strict=True)]


class WindowCounts:
    """Counts of a window's finite values per PSI bin and per reference-sample cell, by feature.

    ``edges``/``expected``/``samples`` are the references' per feature, in column order."""

    def __init__(
        self,
        edges: Sequence[NDArray[np.float64]],
        expected: Sequence[NDArray[np.float64]],
        samples: Sequence[NDArray[np.float64]],
    ) -> None:
        feature = np.arange(len(edges))
        self.n = np.zeros(len(edges), dtype=np.int64)  # finite values in the window

        # PSI: counts per bin (floats holding integers, so bincount's weights add in place).
        self._edges = list(edges)
        bin_lengths = [len(e) + 1 for e in edges]
        self._bins = np.zeros(sum(bin_lengths))
        self._bin_views = _views(self._bins, bin_lengths)
        self._bin_start = _starts(bin_lengths)
        self._bin_feature = np.repeat(feature, bin_lengths)
        self._expected = np.clip(np.concatenate(expected), PSI_FLOOR, None)

        # KS: the reference sample's distinct values; a sample holding NaN gets nan figures
        # (as ks_2samp's nan_policy="propagate" gives), and keeps a stand-in value to count by.
        self.sample_has_nan = np.array([bool(np.isnan(s).any()) for s in samples])
        self.sample_size = np.array([len(s) for s in samples], dtype=np.int64)
        self._support, ref_at, ref_before = [], [], []
        for s in samples:
            s = np.sort(s[~np.isnan(s)])
            values = np.unique(s) if len(s) else np.zeros(1)
            at_or_below = np.searchsorted(s, values, side="right")
            self._support.append(values)
            ref_at.append(at_or_below / max(len(s), 1))  # F_ref(r_k), as ks_2samp divides
            ref_before.append(np.concatenate(([0], at_or_below[:-1])) / max(len(s), 1))
        self._ref_at = np.concatenate(ref_at)
        self._ref_before = np.concatenate(ref_before)
        lengths = [len(v) for v in self._support]
        self._support_start = _starts(lengths)
        self._support_feature = np.repeat(feature, lengths)
        cell_lengths = [2 * p + 1 for p in lengths]
        self._cells = np.zeros(sum(cell_lengths))
        self._cell_views = _views(self._cells, cell_lengths)
        self._cell_start = _starts(cell_lengths)
        # r_k's cells in the flat array: just below it at _below_cell, equal to it one after
        rank = np.arange(len(self._support_feature)) - self._support_start[self._support_feature]
        self._below_cell = self._cell_start[self._support_feature] + 2 * rank

    def clear(self) -> None:
        self.n[:] = 0
        self._bins[:] = 0
        self._cells[:] = 0

    def move(self, leaving: NDArray[np.float64], entering: NDArray[np.float64]) -> None:
        """Count the rows (rows by features) that left the window out and those entering in."""
        columns = np.ascontiguousarray(np.concatenate((leaving, entering)).T)  # by feature
        finite = np.isfinite(columns)
        signs = np.where(np.arange(columns.shape[1]) < len(leaving), -1.0, 1.0)
        self.n += finite[:, len(leaving) :].sum(axis=1) - finite[:, : len(leaving)].sum(axis=1)
        all_finite = bool(finite.all())
        for j, (edges, support) in enumerate(zip(self._edges, self._support, strict=True)):
            values, weight = columns[j], signs
            if not all_finite:
                values, weight = values[finite[j]], signs[finite[j]]
            bins = np.searchsorted(edges, values, side="right")
            self._bin_views[j] += np.bincount(bins, weight, minlength=len(edges) + 1)
            at = np.searchsorted(support, values, side="left")
            equal = support[np.minimum(at, len(support) - 1)] == values
            cells = np.bincount(2 * at + equal, weight, minlength=2 * len(support) + 1)
            self._cell_views[j] += cells

    def psi(self) -> NDArray[np.float64]:
        """PSI per feature of the counted window (meaningless where ``n`` is 0)."""
        total = np.maximum(self.n, 1)[self._bin_feature]
        actual = np.clip(self._bins / total, PSI_FLOOR, None)
        terms = (actual - self._expected) * np.log(actual / self._expected)
        return np.add.reduceat(terms, self._bin_start)

    def ks_statistic(self) -> NDArray[np.float64]:
        """``ks_2samp(window, sample).statistic`` per feature, before scipy's lattice rounding."""
        cumulative = np.cumsum(self._cells)
        # counts up to the end of the previous feature's cells: subtracted to start at 0
        before = np.concatenate(([0.0], cumulative))[self._cell_start]
        base = before[self._support_feature]
        n = np.maximum(self.n, 1)[self._support_feature]
        below = (cumulative[self._below_cell] - base) / n  # F_window just below r_k
        at = (cumulative[self._below_cell + 1] - base) / n  # F_window(r_k)
        # ks_2samp's cdf1 - cdf2 on the same floats; the first cell's count keeps above >= 0.
        above = np.maximum.reduceat(below - self._ref_before, self._support_start)
        under = np.clip(np.maximum.reduceat(self._ref_at - at, self._support_start), 0, 1)
        result: NDArray[np.float64] = np.where(under > above, under, above)
        return result
