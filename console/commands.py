"""The command palette: every screen's verbs, named "resource: verb"."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from console.app import MlopsApp


@dataclass(frozen=True)
class PaletteCommand:
    """A palette entry: go to ``mode``, then run ``action`` on its screen (if any)."""

    name: str
    help: str
    mode: str
    action: str | None = None
    mutating: bool = False


COMMANDS = (
    PaletteCommand("runs: open", "Experiments and their runs", "runs"),
    PaletteCommand("runs: filter", "Filter runs with an MLflow expression", "runs", "filter"),
    PaletteCommand("runs: train", "Launch a training and follow its log", "runs", "train", True),
    PaletteCommand("runs: compare marked", "Compare the marked runs", "runs", "compare"),
    PaletteCommand("models: open", "Registered models and versions", "models"),
    PaletteCommand("models: filter", "Narrow the models by name or alias", "models", "filter"),
    PaletteCommand(
        "models: promote", "Move champion to the selected version", "models", "promote", True
    ),
    PaletteCommand("models: roll back", "Move champion back one step", "models", "rollback", True),
    PaletteCommand("models: alias history", "Every move of every alias", "models", "history"),
    PaletteCommand("deployments: open", "The live map of serving containers", "deploy"),
    PaletteCommand(
        "deployments: filter", "Narrow the deployments by name, model or alias", "deploy", "filter"
    ),
    PaletteCommand("deployments: logs", "Follow the selected deployment's logs", "deploy", "logs"),
    PaletteCommand(
        "deployments: build image", "Build a version's serving image", "deploy", "build", True
    ),
    PaletteCommand(
        "deployments: new deployment", "Deploy a version, new or over one", "deploy", "deploy", True
    ),
    PaletteCommand(
        "deployments: roll back", "Serve the previous version again", "deploy", "rollback", True
    ),
    PaletteCommand("deployments: take down", "Remove a deployment", "deploy", "take_down", True),
    PaletteCommand(
        "deployments: resume canary",
        "Resume the selected deployment's paused canary analysis",
        "deploy",
        "canary_resume",
        True,
    ),
    PaletteCommand(
        "deployments: abort canary",
        "All traffic back to stable; the canary goes",
        "deploy",
        "canary_abort",
        True,
    ),
    PaletteCommand(
        "deployments: promote canary",
        "Make the selected deployment's canary the stable version now",
        "deploy",
        "canary_promote",
        True,
    ),
    PaletteCommand("monitor: open", "Latency, errors and drift", "monitor"),
    PaletteCommand("monitor: filter", "Narrow the deployments watched", "monitor", "filter"),
    PaletteCommand("alerts: open", "Alert groups and silences", "alerts"),
    PaletteCommand(
        "alerts: acknowledge",
        "Silence the selected group 15 minutes",
        "alerts",
        "acknowledge",
        True,
    ),
    PaletteCommand("alerts: silence", "Silence alerts by matchers", "alerts", "silence", True),
    PaletteCommand("alerts: expire", "End the selected silence", "alerts", "expire", True),
    PaletteCommand("alerts: runbook", "Read the selected alert's runbook", "alerts", "runbook"),
    PaletteCommand(
        "monitor: retrain",
        "Train a challenger for the selected deployment's model on new data",
        "monitor",
        "retrain",
        True,
    ),
)


class MlopsCommands(Provider):
    """Palette commands for the console (mutating ones left out in read-only mode)."""

    def _commands(self) -> list[PaletteCommand]:
        app: MlopsApp = self.app  # type: ignore[assignment]
        return [c for c in COMMANDS if not (c.mutating and app.settings.read_only)]

    async def discover(self) -> Hits:
        app: MlopsApp = self.app  # type: ignore[assignment]
        for command in self._commands():
            yield DiscoveryHit(
                command.name, partial(app.run_command, command.mode, command.action), command.help
            )

    async def search(self, query: str) -> Hits:
        app: MlopsApp = self.app  # type: ignore[assignment]
        matcher = self.matcher(query)
        for command in self._commands():
            score = matcher.match(command.name)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(command.name),
                    partial(app.run_command, command.mode, command.action),
                    help=command.help,
                )
