"""Retraining from the monitor: ask for new data, saying what drifted; then show the outcome."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from backends.records import DeploymentHealth, DriftThresholds, RetrainOutcome
from console import format as fmt
from console.modals.message import MessageModal
from console.widgets.drift import over_threshold

WHAT_HAPPENS = (
    "Trains the serving run's project with its own parameters on this data, registers the run "
    "as a new version, scores champion and challenger on this same data (for a held-out set "
    "use `mlops retrain --eval-data`), and moves the challenger alias only if the new version "
    "is no worse. Champion does not move: you promote later."
)


def drift_report(row: DeploymentHealth, thresholds: DriftThresholds) -> str:
    """Which features are over their PSI threshold, by how much (or that none is)."""
    over = over_threshold(row, thresholds)
    if not over:
        return f"No feature is over its PSI threshold ({thresholds.psi:g}) now."
    lines = [f"Drift over the PSI threshold {thresholds.psi:g} ({thresholds.source}):"]
    for f in over:
        psi = f.psi or 0.0
        lines.append(
            f"  ▲ {f.feature}: PSI {psi:.3f} (+{psi - thresholds.psi:.3f}), "
            f"KS p {fmt.number(f.ks_pvalue, 3)}"
        )
    return "\n".join(lines)


class RetrainModal(ModalScreen[str | None]):
    """What drifted and what retraining does; dismisses with the CSV path, or None."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="retrain.cancel", tooltip="Retrain nothing"),
    ]

    def __init__(self, row: DeploymentHealth, thresholds: DriftThresholds) -> None:
        super().__init__()
        self.row = row
        self.thresholds = thresholds

    def compose(self) -> ComposeResult:
        row = self.row
        with Vertical(classes="dialog"):
            yield Static(
                f"Retrain {row.deployment}? (serving {row.model} v{row.version})",
                classes="dialog-title",
                markup=False,
            )
            yield Static(
                drift_report(row, self.thresholds),
                id="retrain-drift",
                classes="dialog-body",
                markup=False,
            )
            yield Static(WHAT_HAPPENS, classes="dialog-hint", markup=False)
            yield Label("new data: a CSV with the features and a 'target' column")
            yield Input(placeholder="path/to/new-data.csv", id="retrain-data")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Retrain", variant="warning", id="retrain-go")
                yield Button("Cancel (esc)", id="retrain-cancel")

    def on_mount(self) -> None:
        self.query_one("#retrain-data", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "retrain-go":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        path = self.query_one("#retrain-data", Input).value.strip()
        if not path:
            self.notify("name the CSV to train on", severity="error")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


def outcome_report(o: RetrainOutcome) -> str:
    """What the retraining did, and what is left to a human."""
    return "\n".join(
        [
            f"{o.deployment} served {o.model} v{o.served_version} (run {o.served_run_id[:12]})",
            f"  {o.drift}",
            "",
            f"trained run {o.run_id} → registered {o.model} v{o.challenger_version}",
            f"  champion {o.champion_score:.4f} vs challenger {o.challenger_score:.4f}",
            f"  {o.comparison}",
            f"gate: {'passed' if o.gate_passed else 'FAILED'} — {o.gate}",
            "",
            f"Not promoted: champion did not move. To promote "
            f"v{o.challenger_version}, open Models (:models), select it and press p — or run "
            f"`mlops models promote {o.model} {o.challenger_version} --alias champion`.",
            f"training log: {o.log_path}",
        ]
    )


class RetrainResultModal(MessageModal):
    """The outcome of a retraining: the challenger, both scores, the gate; nothing promoted."""

    def __init__(self, outcome: RetrainOutcome) -> None:
        verdict = "ready for review" if outcome.gate_passed else "did not pass its gate"
        title = f"Challenger {outcome.model} v{outcome.challenger_version} {verdict}"
        super().__init__(title, outcome_report(outcome), error=not outcome.gate_passed)
