"""The context name on a coloured bar, red for production, so it is recognised at a glance."""

from __future__ import annotations

from textual.widgets import Static

PRODUCTION_NAMES = frozenset({"prod", "production", "prd", "live"})


def is_production(context: str) -> bool:
    """Whether a context name means production."""
    return context.lower() in PRODUCTION_NAMES or context.lower().startswith("prod-")


class ContextBar(Static):
    """`context: NAME` (and `read-only`) above the screen, coloured by context."""

    DEFAULT_CSS = """
    ContextBar { height: 1; background: $primary-background; color: $text; }
    ContextBar.production { background: $error; color: $text; text-style: bold; }
    ContextBar.read-only { color: $text-warning; }
    """

    def __init__(self, context: str, read_only: bool) -> None:
        mode = "  [read-only]" if read_only else ""
        label = " PRODUCTION " if is_production(context) else ""
        super().__init__(f" context: {context}{label}{mode}", id="context-bar", markup=False)
        self.set_class(is_production(context), "production")
        self.set_class(read_only, "read-only")
