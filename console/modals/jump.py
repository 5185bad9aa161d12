"""`:` the k9s jump bar: type a resource (`runs`, `models`, `deploy`, `monitor`, `alerts`)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Input

ALIASES = {
    "runs": "runs",
    "run": "runs",
    "r": "runs",
    "models": "models",
    "model": "models",
    "m": "models",
    "deploy": "deploy",
    "deployments": "deploy",
    "deployment": "deploy",
    "dp": "deploy",
    "d": "deploy",
    "monitor": "monitor",
    "mon": "monitor",
    "mo": "monitor",
    "alerts": "alerts",
    "alert": "alerts",
    "al": "alerts",
    "a": "alerts",
}


CONTEXT_WORDS = ("ctx", "context", "contexts")


def context_request(text: str) -> str | None:
    """``:ctx NAME`` → NAME, ``:ctx`` → "" (pick from a list), anything else → None."""
    word, _, rest = text.strip().lstrip(":").strip().partition(" ")
    if word.lower() not in CONTEXT_WORDS:
        return None
    return rest.strip()


def resolve(text: str) -> str | None:
    """The mode a jump names (``:models``, ``model``, ``m``), or None."""
    word = text.strip().lstrip(":").strip().lower()
    if word in ALIASES:
        return ALIASES[word]
    matches = {mode for alias, mode in ALIASES.items() if word and alias.startswith(word)}
    return matches.pop() if len(matches) == 1 else None


class JumpBar(ModalScreen[str | None]):
    """A one-line prompt at the bottom; dismisses with the typed text, or None on esc."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="jump.cancel", tooltip="Stay here")]

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="runs | models | deploy | monitor | alerts | ctx [NAME]", id="jump-input"
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
