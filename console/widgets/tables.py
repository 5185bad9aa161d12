"""The console's tables: a DataTable whose first frame shows whole cells, and filling one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


def fill(
    table: DataTable[Any],
    headings: Sequence[str],
    rows: Sequence[Sequence[str]],
    keys: Sequence[str],
) -> None:
    """Replace the table's columns and rows (columns as wide as their widest cell: pass a
    ``Table``, whose first frame does not cut them to their headings)."""
    table.clear(columns=True)
    table.add_columns(*headings)
    for cells, key in zip(rows, keys, strict=True):
        table.add_row(*cells, key=key)


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
