"""The runs screen's experiment list: asked for after the first page, shown beside the runs on
wide terminals (``e`` shows it anywhere), and picking one lists its runs."""

from __future__ import annotations

from textual import events, on, work
from textual.widgets import DataTable, OptionList
from textual.widgets.option_list import Option

from console.capabilities import Runs
from console.messages import ExperimentsLoaded
from console.screens.base import ResourceScreen

SIDEBAR_MIN_WIDTH = 100  # narrower terminals hide the experiment list until `e` shows it


class ExperimentsPane(ResourceScreen):
    """The experiment list of RunsScreen (which provides what is declared here)."""

    experiment: str
    _fallback: str | None
    marked: set[str]
    _experiments_state: str  # none → asked → loaded (back to none when it fails)
    _sidebar_chosen: bool | None  # the user's `e` toggle wins over the width

    @property
    def runs_of(self) -> Runs:
        """The one capability this screen uses."""
        return self.mlops.services.runs

    def load(self, quick: bool = True) -> None:
        """List the runs of ``experiment`` (RunsScreen)."""

    def on_resize(self, event: events.Resize) -> None:
        self._place_sidebar()

    def _place_sidebar(self) -> None:
        """Show the experiment list on wide screens once it has entries, unless `e` decided."""
        if not self.body_ready:
            return  # mounted with the body, which places it then
        options = self.query_one("#experiments", OptionList)
        if self._sidebar_chosen is not None or options.has_focus:
            return
        show = options.option_count > 0 and self.size.width >= SIDEBAR_MIN_WIDTH
        if show == options.has_class("hidden"):  # only a change restyles the screen
            options.set_class(not show, "hidden")

    def _ask_experiments(self) -> None:
        if self._experiments_state == "none":
            self._experiments_state = "asked"
            self._load_experiments()

    @work(thread=True, exclusive=True, exit_on_error=False, group="experiments")
    def _load_experiments(self) -> None:
        try:
            found = self.runs_of.list_experiments()
        except Exception:  # the runs pane says the server is unreachable; asked again later
            self.post_message(ExperimentsLoaded(None))
        else:
            self.post_message(ExperimentsLoaded(found))

    def on_experiments_loaded(self, message: ExperimentsLoaded) -> None:
        if message.experiments is None:
            self._experiments_state = "none"  # the next listing or failure asks again
            return
        self._experiments_state = "loaded"
        options = self.query_one("#experiments", OptionList)
        options.clear_options()
        options.add_options(Option(e.name, id=e.experiment_id) for e in message.experiments)
        self._highlight_current()
        self._place_sidebar()

    def _highlight_current(self) -> None:
        options = self.query_one("#experiments", OptionList)
        for index in range(options.option_count):
            option = options.get_option_at_index(index)
            if str(option.prompt) == self.experiment or option.id == self.experiment:
                options.highlighted = index
                return

    def action_experiments(self) -> None:
        """Show and focus the experiment list; from the list, hide it again (narrow terminals)."""
        options = self.query_one("#experiments", OptionList)
        if options.has_focus:
            self._sidebar_chosen = self.size.width >= SIDEBAR_MIN_WIDTH
            options.set_class(not self._sidebar_chosen, "hidden")
            self.query_one("#runs-table", DataTable).focus()
            return
        options.remove_class("hidden")
        options.focus()

    @on(OptionList.OptionSelected, "#experiments")
    def _experiment_selected(self, event: OptionList.OptionSelected) -> None:
        self.experiment = str(event.option.prompt)
        self._fallback = None
        self.marked.clear()
        if self._sidebar_chosen is None and self.size.width < SIDEBAR_MIN_WIDTH:
            event.option_list.add_class("hidden")
        table = self.query_one("#runs-table", DataTable)
        table.clear(columns=True)
        table.focus()
        self.set_pane_status(f"experiment {self.experiment}: loading…")
        self.load()
