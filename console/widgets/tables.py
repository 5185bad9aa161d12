"""Filling a DataTable in one go, with every column as wide as its widest cell."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable


def fill(
    table: DataTable[str],
    headings: Sequence[str],
    rows: Sequence[Sequence[str]],
    keys: Sequence[str],
) -> None:
    """Replace the table's columns and rows.

    Widths come from the cells themselves: DataTable's auto width lags one render behind when
    rows arrive in the same call that cleared the table, and the first frame then cuts every
    cell to its heading ("champ", "runni").
    """
    table.clear(columns=True)
    for i, heading in enumerate(headings):
        table.add_column(heading, width=max([len(heading), *(len(r[i]) for r in rows)]))
    for cells, key in zip(rows, keys, strict=True):
        table.add_row(*cells, key=key)
