"""A table shows its cells whole from the first frame it draws after a fill."""

from __future__ import annotations

from textual.app import App, ComposeResult

from console.widgets import tables


class OneTable(App[None]):
    def compose(self) -> ComposeResult:
        yield tables.Table(id="t", cursor_type="row")


async def test_a_filled_table_draws_whole_cells_before_datatable_measures_them() -> None:
    """DataTable widens its columns only when next idle; a frame drawn before that cut a
    promoted version's "champion" to its heading ("champio"), and under load (the e2e tmux
    test, once) it stayed so. The widths are set with the rows."""
    app = OneTable()
    async with app.run_test(size=(80, 10)) as pilot:
        table = app.query_one(tables.Table)
        headings = ("version", "aliases", "status")
        tables.fill(table, headings, [("v1", "-", "READY")], ["1"])
        await pilot.pause()
        tables.fill(table, headings, [("v1", "champion", "READY")], ["1"])
        row = table.render_line(1).text  # no idle in between: the frame as first drawn
        assert "champion  READY" in row, row
        # Markup is measured as DataTable draws it: "[b]x[/b]" is one cell wide.
        tables.fill(table, ("a", "b"), [("[b]x[/b]", "yy")], ["k"])
        assert table.render_line(1).text.split() == ["x", "yy"]
        await pilot.pause()
        assert "x  yy" in table.render_line(1).text
