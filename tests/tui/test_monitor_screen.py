"""Monitor: rate, errors, latency quantiles over time, PSI per feature against its threshold, and
retraining offered when drift crosses the threshold."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from textual.widgets import Input

from backends.errors import BackendError
from backends.records import DriftThresholds, MonitorHistory, MonitorSnapshot
from console.commands import COMMANDS
from console.modals.message import ErrorModal
from console.modals.retrain import RetrainModal, RetrainResultModal
from console.screens.monitor import MonitorScreen
from console.widgets.plots import FigurePlot
from tests.tui.fakes import FakeBackends, services
from tests.tui.helpers import wait_for_text, wait_until

OFFER = "Drift: retrain?"


def called(fake: FakeBackends, method: str) -> list[tuple[object, ...]]:
    return [c for c in fake.calls if c[0] == method]


def offers(app: Any) -> list[str]:
    return [n.message for n in app._notifications if n.title == OFFER]


def plot(app: Any, plot_id: str) -> FigurePlot:
    found: FigurePlot = app.screen.query_one(f"#{plot_id}", FigurePlot)
    return found


@dataclass
class DriftingBackends(FakeBackends):
    """petal_length's PSI follows ``psi`` one sample at a time (the last value stays)."""

    psi: list[float] = field(default_factory=list)
    limits: DriftThresholds = field(
        default_factory=lambda: DriftThresholds(0.2, 0.05, "drift_reference.json of run r")
    )

    def monitor(self) -> MonitorSnapshot:
        snap = super().monitor()
        value = self.psi.pop(0) if len(self.psi) > 1 else self.psi[0]
        (row,) = snap.rows
        drift = tuple(
            replace(f, psi=value) if f.feature == "petal_length" else f for f in row.drift
        )
        return replace(snap, rows=(replace(row, drift=drift),))

    def drift_thresholds(self, model: str, version: str) -> DriftThresholds:
        super().drift_thresholds(model, version)
        return self.limits


def samples(fake: FakeBackends) -> int:
    return len(called(fake, "monitor"))


async def test_health_and_drift_against_the_references_threshold(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        text = await wait_for_text(pilot, "drift_reference.json of run r")
        for expected in ("iris-prod", "iris v2", "12.5", "1.00%", "4.0ms", "12.0ms", "30.0ms"):
            assert expected in text, expected
        assert "direct scrape" in text and "alerts: not evaluated by this source" in text
        # Each feature against its threshold, over-threshold said in words, not colour alone.
        assert "petal_length\n0.35\n0.2\n0.01\n▲ over" in text
        assert "sepal_width\n0.02\n0.2\n0.6\nok" in text
        assert ("drift_thresholds", "iris", 2) in fake.calls
        await wait_until(pilot, lambda: samples(fake) >= 3, "refreshes")
        assert len(called(fake, "drift_thresholds")) == 1  # read once per model version


async def test_plots_get_the_selected_deployments_history(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: bool(plot(app, "plot-rate").lines), "rate plotted")
        assert ("monitor_history", "iris-prod", 15.0) in fake.calls
        # x: minutes before the history's end; y: in the plot's unit.
        assert plot(app, "plot-rate").lines == {"req/s": ((-2.0, 0.0), (10.0, 12.5))}
        assert plot(app, "plot-errors").lines == {"5xx %": ((-2.0, 0.0), (0.0, 1.0))}
        latency = plot(app, "plot-latency").lines
        assert list(latency) == ["p50", "p95", "p99"]  # named in a legend: no colour needed
        assert [ys for _, ys in latency.values()] == [(3.0, 4.0), (10.0, 12.0), (20.0, 30.0)]
        assert plot(app, "plot-quality").lines == {"accuracy %": ((-2.0, 0.0), (95.0, 93.0))}
        # Refreshed with the samples.
        before = len(called(fake, "monitor_history"))
        await wait_until(pilot, lambda: len(called(fake, "monitor_history")) > before, "again")


async def test_a_slow_history_blocks_neither_input_nor_sampling(
    make_app: Any, fake: FakeBackends
) -> None:
    release = threading.Event()
    slow_calls: list[str] = []

    def slow(deployment: str, minutes: float, instance: str = "") -> MonitorHistory:
        slow_calls.append(deployment)
        release.wait(60)  # a Prometheus that takes its time (until the test releases it)
        return FakeBackends.monitor_history(fake, deployment, minutes, instance)

    fake.monitor_history = slow  # type: ignore[method-assign]
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: bool(slow_calls), "history asked")
        count = samples(fake)
        await wait_until(pilot, lambda: samples(fake) >= count + 3, "sampling goes on")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "HelpModal", "keys")
        await pilot.press("escape")
        assert slow_calls == ["iris-prod"]  # one query in flight, no pile-up behind it
        release.set()
        await wait_until(pilot, lambda: bool(plot(app, "plot-rate").lines), "plotted at last")


@dataclass
class TwoDeployments(FakeBackends):
    """iris-prod as the fake has it; iris-canary serving v3 without drift."""

    def monitor(self) -> MonitorSnapshot:
        snap = super().monitor()
        (prod,) = snap.rows
        canary = replace(prod, deployment="iris-canary", version=3, request_rate=1.5, drift=())
        return replace(snap, rows=(canary, prod))


async def test_moving_the_cursor_plots_and_shows_the_other_deployment(make_app: Any) -> None:
    fake = TwoDeployments()
    app = make_app(start_mode="monitor")
    app.services = services(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "drift of iris-canary: no figures yet")
        await wait_until(pilot, lambda: ("monitor_history", "iris-canary", 15.0) in fake.calls, "1")
        await pilot.press("down")
        text = await wait_for_text(pilot, "drift of iris-prod")
        assert "petal_length\n0.35" in text
        await wait_until(pilot, lambda: ("monitor_history", "iris-prod", 15.0) in fake.calls, "2")
        assert isinstance(app.screen, MonitorScreen) and app.screen.selected == "iris-prod"
        # The selection holds across refreshes.
        count = samples(fake)
        await wait_until(pilot, lambda: samples(fake) > count + 2, "refreshes")
        assert app.screen.selected == "iris-prod"
        assert ("drift_thresholds", "iris", 3) not in fake.calls  # no drift: nothing to judge


@dataclass
class MidRollout(FakeBackends):
    """iris-prod answers as v3 while v2's series are still in the window."""

    def monitor(self) -> MonitorSnapshot:
        snap = super().monitor()
        (old,) = snap.rows
        new = replace(old, version=3)
        return replace(snap, rows=(replace(old, up=False), new))


async def test_a_deployment_with_a_row_per_version_is_one_deployment(make_app: Any) -> None:
    fake = MidRollout()
    app = make_app(start_mode="monitor")
    app.services = services(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: samples(fake) >= 5, "samples")
        assert isinstance(app.screen, MonitorScreen)
        assert app.screen.selected_row() is not None
        assert app.screen.selected_row().version == 3  # type: ignore[union-attr]
        assert app.screen.offers == ["iris-prod"]  # once, not once per row


async def test_drift_crossing_offers_retraining_once(make_app: Any) -> None:
    fake = DriftingBackends(psi=[0.05, 0.05, 0.05, 0.35, 0.36, 0.4, 0.38, 0.35])
    app = make_app(start_mode="monitor")
    app.services = services(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: samples(fake) >= 10, "samples over the threshold")
        (offer,) = offers(app)
        assert "iris-prod: petal_length PSI 0.35 over the PSI threshold 0.2" in offer
        assert "press T to retrain" in offer
        assert isinstance(app.screen, MonitorScreen) and app.screen.offers == ["iris-prod"]
        # Back under, then over again: a new crossing, a new offer.
        fake.psi = [0.05, 0.05, 0.3]
        await wait_until(pilot, lambda: len(offers(app)) == 2, "second crossing")


async def test_the_references_own_threshold_decides(make_app: Any) -> None:
    fake = DriftingBackends(psi=[0.35], limits=DriftThresholds(0.5, 0.05, "its reference"))
    app = make_app(start_mode="monitor")
    app.services = services(fake)
    async with app.run_test(size=(120, 40)) as pilot:
        text = await wait_for_text(pilot, "its reference")
        assert "petal_length\n0.35\n0.5\n0.01\n▽ KS p low" in text  # under 0.5: no ▲
        await wait_until(pilot, lambda: samples(fake) >= 4, "samples")
        assert offers(app) == []


async def test_unread_reference_uses_the_defaults_and_asks_again_later(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.failing["drift_thresholds"] = BackendError("MLflow is down", title="MLflow unreachable")
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        text = await wait_for_text(pilot, "default (reference unread: MLflow unreachable)")
        assert "petal_length\n0.35\n0.2" in text
        await wait_until(pilot, lambda: samples(fake) >= 4, "samples")
        assert len(called(fake, "drift_thresholds")) == 1  # not asked again at every sample
        # PSI 0.35 is over the default 0.2, but the model's own threshold is unknown yet:
        # shown against the defaults, no retraining offered on them.
        assert offers(app) == []


async def test_retrain_modal_runs_the_backend_and_shows_the_challenger(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "drift_reference.json of run r")
        await pilot.press("T")
        await wait_until(pilot, lambda: isinstance(app.screen, RetrainModal), "retrain modal")
        body = str(app.screen.query_one("#retrain-drift").render())
        assert "▲ petal_length: PSI 0.350 (+0.150), KS p 0.01" in body
        assert "sepal_width" not in body
        app.screen.query_one("#retrain-data", Input).value = "/data/new.csv"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RetrainResultModal), "outcome")
        assert called(fake, "retrain") == [("retrain", "iris-prod", "/data/new.csv")]
        assert not called(fake, "promote")  # champion never moves from here
        report = str(app.screen.query_one("#message-body").render())
        assert "registered iris v3" in report
        assert "champion 0.9533 vs challenger 0.9600" in report
        assert "gate: passed" in report
        assert "Not promoted: champion did not move" in report
        assert "select it and press p" in report
        assert "Challenger iris v3 ready for review" in str(
            app.screen.query_one("#message-title").render()
        )
        await pilot.press("escape")
        assert isinstance(app.screen, MonitorScreen) and app.screen.retraining is None


async def test_retrain_needs_a_data_path_and_can_be_cancelled(
    make_app: Any, fake: FakeBackends
) -> None:
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("T")
        await wait_until(pilot, lambda: isinstance(app.screen, RetrainModal), "retrain modal")
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, RetrainModal)  # an empty path is not submitted
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MonitorScreen), "cancelled")
        assert not called(fake, "retrain")


async def test_read_only_refuses_retraining(make_app: Any, fake: FakeBackends) -> None:
    app = make_app(start_mode="monitor", read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        assert "Retrain" not in str(app.screen.active_bindings.get("T", ""))
        await pilot.press("T")
        await app.run_command("monitor", "retrain")  # the palette lists it not, and if it did
        await wait_until(
            pilot,
            lambda: any("retrain is disabled" in n.message for n in app._notifications),
            "the refusal",
        )
        await pilot.pause(0.1)  # a second notification, if one were coming, comes with it
        assert isinstance(app.screen, MonitorScreen)
        assert sum("retrain is disabled" in n.message for n in app._notifications) == 1
        assert not called(fake, "retrain")
        (offer,) = offers(app)  # drift is still reported, without the key to press
        assert "read-only: retraining is disabled" in offer


def test_the_palette_names_retraining_as_mutating() -> None:
    (command,) = [c for c in COMMANDS if c.name == "monitor: retrain"]
    assert (command.mode, command.action, command.mutating) == ("monitor", "retrain", True)


async def test_retrain_failure_shows_the_error(make_app: Any, fake: FakeBackends) -> None:
    fake.failing["retrain"] = BackendError("training failed (run x: FAILED)", title="Retraining")
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "iris-prod")
        await pilot.press("T")
        await wait_until(pilot, lambda: isinstance(app.screen, RetrainModal), "retrain modal")
        app.screen.query_one("#retrain-data", Input).value = "new.csv"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ErrorModal), "error modal")
        assert "training failed (run x: FAILED)" in app.screen.message
        await pilot.press("escape")
        assert isinstance(app.screen, MonitorScreen) and app.screen.retraining is None
        assert len(app.screen_stack) == 1  # one error, one modal


async def test_metrics_down_then_recovers(make_app: Any, fake: FakeBackends) -> None:
    fake.down["metrics"] = 1
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "unreachable since")
        await wait_for_text(pilot, "iris-prod")
        await wait_until(pilot, lambda: bool(plot(app, "plot-rate").lines), "plots after recovery")


async def test_history_down_is_said_on_the_plots_then_recovers(
    make_app: Any, fake: FakeBackends
) -> None:
    fake.down["history"] = 2
    app = make_app(start_mode="monitor")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "unreachable" in plot(app, "plot-rate").note, "note")
        assert isinstance(app.screen, MonitorScreen)  # no modal for a plot
        await wait_until(pilot, lambda: bool(plot(app, "plot-rate").lines), "plots recover")
        assert plot(app, "plot-rate").note == ""


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_small_terminals_keep_plots_legend_and_drift_table(
    make_app: Any, fake: FakeBackends, size: tuple[int, int]
) -> None:
    app = make_app(start_mode="monitor")
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: bool(plot(app, "plot-latency").lines), "plotted")
        await pilot.pause(0.1)
        screen = app.screen
        assert screen.query_one("#drift-table").region.bottom <= size[1] - 2
        assert all(p.size.height >= 7 and p.size.width >= 20 for p in screen.query(FigurePlot))
        drawn = plot(app, "plot-latency").render()
        assert all(f"{m}{m} {label}" in str(drawn) for m, label in (("+", "p95"), ("x", "p99")))
