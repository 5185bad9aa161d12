"""The console's tables: a DataTable whose first frame shows whole cells, and filling one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


def fill(
    table: DataTable[Any],
    headings: Sequence[str],
    rows: Sequence[Sequence[str]],
    keys: Sequence[str],
) -> None:
    """Replace the table's columns and rows, each column as wide as its widest cell.

    The widths are set here rather than left to DataTable, which measures new rows when it is
    next idle: a version's "champion" stayed cut to its heading ("champio") after a promote
    under load (seen once in the e2e tmux test), filled again before it had measured."""
    widths = [_width(h) for h in headings]
    for cells in rows:
        widths = [max(w, _width(c)) for w, c in zip(widths, cells, strict=True)]
    table.clear(columns=True)
    for heading, width in zip(headings, widths, strict=True):
        table.add_column(heading, width=width)
    for cells, key in zip(rows, keys, strict=True):
        table.add_row(*cells, key=key)


def _width(cell: str) -> int:
    """A cell's width on screen: DataTable reads a string cell as markup."""
    return Text.from_markup(cell).cell_len


class Table(DataTable[Any]):
    """A DataTable whose cached lines follow its column widths.

    DataTable measures the cells of new rows when idle and widens the columns then, but keeps
    the lines it rendered before that: a table filled in one call showed every cell cut to its
    heading ("champ", "rollba") until something else cleared its caches (Textual 8.2). This
    hooks the measuring step, a private one: the pinned Textual is the one it was checked on.
    """

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        super()._update_dimensions(new_rows)
        self._clear_caches()
