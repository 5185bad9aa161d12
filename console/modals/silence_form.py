"""`s` on the Alerts screen: which alerts to silence, for how long, and why.

The form only checks what it can alone (the matchers' syntax, the duration); the next step
asks Alertmanager how many alerts the matchers match now and shows that before posting.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.widgets import Input, Static

from backends.errors import InvalidInput
from backends.prometheus.matchers import check_silenceable, parse_matchers
from backends.prometheus.queries import duration_seconds
from console.modals.form import Form


@dataclass(frozen=True)
class SilenceRequest:
    matchers: list[str]
    minutes: float
    comment: str


class SilenceForm(Form[SilenceRequest | None]):
    TITLE_TEXT = "Silence alerts"
    SUBMIT = "Review"

    def __init__(self, matchers: str, duration: str = "2h") -> None:
        super().__init__()
        self.matchers = matchers
        self.duration = duration

    def compose_rows(self) -> ComposeResult:
        yield self._row(
            "matchers",
            Input(
                self.matchers,
                placeholder='deployment="web", alertname=~"Mlops.*"',
                id="silence-matchers",
                compact=True,
            ),
        )
        yield self._row(
            "for", Input(self.duration, placeholder="15m, 2h, 1d", id="silence-for", compact=True)
        )
        yield self._row(
            "comment",
            Input(
                "",
                placeholder="why (everyone who sees it reads this)",
                id="silence-comment",
                compact=True,
            ),
        )
        yield Static(
            "Nothing is posted yet: the next step shows how many alerts these match now.",
            classes="dialog-hint",
        )

    def result(self) -> SilenceRequest | None:
        text = self._value("silence-matchers")
        check_silenceable(parse_matchers([text]))
        seconds = duration_seconds(self._value("silence-for") or "2h")
        if seconds <= 0:
            raise InvalidInput("a silence lasts longer than 0")
        return SilenceRequest([text], seconds / 60, self._value("silence-comment"))
