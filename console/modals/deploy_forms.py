"""`b` and `u` on the Deployments screen: which version to build, and what to deploy where.

The forms check only what they can without a backend (the reference's shape, the name, the
port); everything else is the backend's to say, in the error modal.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.widgets import Checkbox, Input, Static

from backends.defaults import DEFAULT_HOST, DEFAULT_PORT
from backends.lifecycle.deploy import check_name
from backends.mlflow.models import parse_reference
from backends.records import Deployment
from console.modals.form import Form as _Form


@dataclass(frozen=True)
class DeployRequest:
    """What the operator asked to deploy (``name`` empty: the model's name)."""

    reference: str = ""
    name: str = ""
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    follow_alias: bool = False

    @classmethod
    def over(cls, d: Deployment) -> DeployRequest:
        """A request to deploy again over ``d``, through its alias when it has one."""
        reference = f"{d.model}@{d.alias}" if d.alias else f"{d.model}/{d.version}"
        return cls(reference, d.name, d.host, d.port or DEFAULT_PORT, d.follow_alias)


class BuildForm(_Form[str | None]):
    """Which version to build a serving image of; dismisses with the reference, or None."""

    TITLE_TEXT = "Build a serving image"
    SUBMIT = "Build"

    def __init__(self, reference: str = "") -> None:
        super().__init__()
        self.reference = reference

    def compose_rows(self) -> ComposeResult:
        yield self._row(
            "model",
            Input(
                self.reference,
                placeholder="NAME/VERSION or NAME@ALIAS",
                id="build-ref",
                compact=True,
            ),
        )
        yield Static(
            "The same build as `mlops image build`: cached when nothing changed.",
            classes="dialog-hint",
        )

    def result(self) -> str | None:
        reference = self._value("build-ref")
        parse_reference(reference)
        return reference


class DeployForm(_Form[DeployRequest | None]):
    """What to deploy, under which name, on which address; dismisses with a DeployRequest."""

    TITLE_TEXT = "Deploy a model version"
    SUBMIT = "Review"

    def __init__(self, request: DeployRequest) -> None:
        super().__init__()
        self.request = request

    def compose_rows(self) -> ComposeResult:
        r = self.request
        yield self._row(
            "model",
            Input(
                r.reference, placeholder="NAME@ALIAS or NAME/VERSION", id="deploy-ref", compact=True
            ),
        )
        yield self._row(
            "name",
            Input(r.name, placeholder="default: the model's name", id="deploy-name", compact=True),
        )
        yield self._row("host", Input(r.host, id="deploy-host", compact=True))
        yield self._row("port", Input(str(r.port), type="integer", id="deploy-port", compact=True))
        yield self._row(
            "",
            Checkbox(
                "follow the alias (reload when it moves)",
                r.follow_alias,
                id="deploy-follow",
                compact=True,
            ),
        )
        yield Static(
            "Nothing changes yet: the next step shows what this deploy will do.",
            classes="dialog-hint",
        )

    def result(self) -> DeployRequest | None:
        reference = self._value("deploy-ref")
        _, alias, _ = parse_reference(reference)
        name = self._value("deploy-name")
        if name:
            check_name(name)
        port = int(self._value("deploy-port") or "0")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not between 1 and 65535")
        follow = self.query_one("#deploy-follow", Checkbox).value
        if follow and not alias:
            raise ValueError("only a NAME@ALIAS reference can be followed")
        host = self._value("deploy-host") or DEFAULT_HOST
        return DeployRequest(reference, name, host, port, follow)
