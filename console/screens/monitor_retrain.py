"""The monitor's retraining: offered when a deployment's drift crosses its threshold (once per
crossing), started with `T` on a new CSV, followed on one status line; the challenger it
registers waits for a person (champion never moves here)."""

from __future__ import annotations

from functools import partial

from textual import work
from textual.widgets import Static

from backends.records import DeploymentHealth, DriftThresholds
from console.capabilities import Monitoring
from console.messages import BackendFailed, RetrainFinished, RetrainProgressed
from console.modals.retrain import RetrainModal, RetrainResultModal
from console.screens.base import PollingScreen
from console.widgets.drift import over_threshold


def row_key(row: DeploymentHealth) -> str:
    """A row's identity: its deployment, or host:port for a target without one."""
    return row.deployment or row.instance


class RetrainOffers(PollingScreen):
    """Retraining for MonitorScreen (which provides what is declared here)."""

    offers: list[str]
    retraining: str | None
    selected: str | None

    @property
    def monitoring(self) -> Monitoring:
        """The one capability this screen uses."""
        return self.mlops.services.monitoring

    def selected_row(self) -> DeploymentHealth | None:
        """The row under the cursor (MonitorScreen)."""
        return None

    def thresholds_for(self, row: DeploymentHealth) -> DriftThresholds:
        """The thresholds of the row's model version (MonitorScreen)."""
        raise NotImplementedError

    def _offer(self, row: DeploymentHealth, limits: DriftThresholds) -> None:
        key = row_key(row)
        self.offers.append(key)
        figures = ", ".join(
            f"{f.feature} PSI {f.psi or 0.0:.2f}" for f in over_threshold(row, limits)[:3]
        )
        if self.mlops.settings.read_only:
            hint = "read-only: retraining is disabled"
        elif not row.deployment:
            hint = f"retrain it with `mlops retrain --target http://{row.instance}`"
        elif key == self.selected:
            hint = "press T to retrain"
        else:
            hint = "select it and press T to retrain"
        self.notify(
            f"{key}: {figures} over the PSI threshold {limits.psi:g} — {hint}",
            title="Drift: retrain?",
            severity="warning",
            timeout=20,
        )

    # ------------------------------------------------------------------ retraining

    def action_retrain(self) -> None:
        if self.refuse_if_read_only("retrain"):
            return
        row = self.selected_row()
        if self.retraining:
            self.notify(f"already retraining {self.retraining}", severity="warning")
        elif row is None:
            self.notify("no deployment selected", severity="warning")
        elif not row.deployment:
            self.notify(
                f"{row.instance} is not a deployment the console runs: "
                f"use `mlops retrain --target http://{row.instance} --data CSV`",
                severity="warning",
            )
        else:
            self.app.push_screen(
                RetrainModal(row, self.thresholds_for(row)),
                partial(self._retrain_confirmed, row.deployment),
            )

    def _retrain_confirmed(self, deployment: str, data: str | None) -> None:
        if not data:
            return
        self.retraining = deployment
        self._retrain_status(f"retraining {deployment} on {data}…")
        self.notify(f"retraining {deployment} on {data}", title="Retraining")
        self._retrain(deployment, data)

    @work(thread=True, exit_on_error=False, group="monitor-retrain")
    def _retrain(self, deployment: str, data: str) -> None:
        def progressed(line: str) -> None:
            self.post_message(RetrainProgressed(deployment, line))

        try:
            outcome = self.monitoring.retrain(deployment, data, progressed)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("retrain", exc))
        else:
            self.post_message(RetrainFinished(outcome))

    def on_retrain_progressed(self, message: RetrainProgressed) -> None:
        if self.retraining:
            self._retrain_status(f"retraining {message.deployment}: {message.line}")

    def on_retrain_finished(self, message: RetrainFinished) -> None:
        self._retrain_ended()
        o = message.outcome
        gate = "gate passed" if o.gate_passed else "gate failed"
        self.notify(
            f"{o.model} v{o.challenger_version}: {gate} (champion unchanged)",
            title="Retraining finished",
        )
        self.app.push_screen(RetrainResultModal(o))

    def _retrain_ended(self) -> None:
        self.retraining = None
        self._retrain_status("")

    def _retrain_status(self, text: str) -> None:
        status = self.query_one("#retrain-status", Static)
        status.update(text)
        status.set_class(bool(text), "running")
