"""What `mlops hooks serve` does with what it receives: Alertmanager's webhook notifications
turned into gated retrainings, one at a time per model, debounced, with a cool-down.

Alertmanager sends a group's notification again and again (every ``group_interval`` while it
changes, every ``repeat_interval`` while it fires) and retries whatever it did not get a 2xx
for. So every decision here answers 200 and is logged — an alert for an unknown deployment, a
resolved one, a model already retraining — and only a body that is not Alertmanager's (400)
or a wrong token (401, in the HTTP layer) is refused. A retraining ends with a ``challenger``
that waits for a person (`mlops models approve`); champion never moves here.

The HTTP layer is ``backends.lifecycle.hooks_http``; this module holds no socket.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from backends.errors import BackendError, InvalidInput
from backends.records import RetrainOutcome, RetrainTrigger

__all__ = [
    "RETRAIN_ALERTS",
    "Decision",
    "Dispatcher",
    "Notification",
    "Target",
    "deployment_lookup",
    "parse_notification",
    "targets_file_lookup",
]

log = logging.getLogger("mlops.hooks")

# The alerts that mean "the model no longer fits the world": deploy/prometheus/rules.yml.
RETRAIN_ALERTS = frozenset({"MlopsFeatureDrift", "MlopsModelQualityLow"})

Outcome = Literal[
    "started",
    "resolved",
    "not a retraining alert",
    "no deployment label",
    "unknown deployment",
    "busy",
    "debounced",
    "cooling down",
]


@dataclass(frozen=True)
class AlertItem:
    status: str  # firing | resolved
    labels: dict[str, str]
    starts_at: str
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class Notification:
    """One webhook body of Alertmanager (version 4), as far as we use it."""

    receiver: str
    status: str
    alerts: tuple[AlertItem, ...]
    group_key: str
    truncated: int  # alerts Alertmanager left out (max_alerts)


@dataclass(frozen=True)
class Target:
    """Where a deployment serves, and which model it serves."""

    deployment: str
    url: str
    model: str


@dataclass(frozen=True)
class Decision:
    """What was done with one alert of a notification, and why."""

    alert: str
    deployment: str
    outcome: Outcome
    detail: str = ""


@dataclass
class _ModelState:
    running: bool = False
    last_trigger: float = float("-inf")
    finished: float = float("-inf")


@dataclass
class Retraining:
    """A retraining the dispatcher started, as `GET /status` shows it."""

    model: str
    deployment: str
    trigger: RetrainTrigger
    started: float
    finished: float | None = None
    outcome: str = ""  # the gate's line, or the error
    challenger: int | None = None


def parse_notification(body: bytes) -> Notification:
    """The webhook body, checked: InvalidInput (a 400) names what is not Alertmanager's."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("not an Alertmanager notification: the body is not a JSON object")
    if str(data.get("version")) != "4":
        raise InvalidInput(
            f"not an Alertmanager notification: version {data.get('version')!r} (we read 4)"
        )
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise InvalidInput("not an Alertmanager notification: no alerts list")
    items = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise InvalidInput(f"alerts[{i}] is not an object")
        labels = alert.get("labels")
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise InvalidInput(f"alerts[{i}].labels is not a map of strings")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise InvalidInput(f"alerts[{i}].status is {status!r}, not firing or resolved")
        items.append(
            AlertItem(
                status=status,
                labels=dict(labels),
                starts_at=str(alert.get("startsAt") or ""),
                fingerprint=str(alert.get("fingerprint") or ""),
            )
        )
    truncated = data.get("truncatedAlerts", 0)
    return Notification(
        receiver=str(data.get("receiver") or ""),
        status=str(data.get("status") or ""),
        alerts=tuple(items),
        group_key=str(data.get("groupKey") or ""),
        truncated=truncated if isinstance(truncated, int) and truncated > 0 else 0,
    )


def targets_file_lookup(path: Path) -> Callable[[str], Target | None]:
    """Deployments from a Prometheus file_sd targets file (what `mlops monitor targets`
    writes, or a hand-written one for servers outside Docker), read afresh on every call."""

    def lookup(deployment: str) -> Target | None:
        try:
            groups = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        for group in groups if isinstance(groups, list) else ():
            labels = group.get("labels") or {} if isinstance(group, dict) else {}
            targets = group.get("targets") or [] if isinstance(group, dict) else []
            # A canary beside the deployment is not the deployment (its router is).
            canary = labels.get("role") == "canary"
            if labels.get("deployment") == deployment and targets and not canary:
                address = str(targets[0])
                url = address if "://" in address else f"http://{address}"
                return Target(deployment, url, str(labels.get("model") or deployment))
        return None

    return lookup


def deployment_lookup(
    docker: Callable[[], Any] | None, targets_path: Path
) -> Callable[[str], Target | None]:
    """Deployments on the Docker engine (``docker`` makes a client; None: no engine), then
    in the targets file: a deployment this console runs, or a server it was told about."""
    from_file = targets_file_lookup(targets_path)

    def lookup(deployment: str) -> Target | None:
        if docker is not None:
            from backends.docker import containers
            from backends.errors import NotFound

            try:
                found = containers.get_deployment(docker(), deployment)
            except NotFound:
                found = None
            except BackendError as exc:  # the engine is down: the file may still know it
                log.warning(
                    "Docker: %s; looking %s up in %s", exc.message, deployment, targets_path
                )
                found = None
            if found is not None and found.url:
                return Target(deployment, found.url, found.model)
        return from_file(deployment)

    return lookup


RetrainFn = Callable[[Target, RetrainTrigger], RetrainOutcome]


@dataclass
class Dispatcher:
    """Turns notifications into retrainings: at most one per model at a time; a model's
    triggers within ``debounce`` seconds of its last one are dropped (Alertmanager repeats
    itself); none for ``cooldown`` seconds after one finished (a new challenger needs time,
    and a person, before drift means anything again)."""

    resolve: Callable[[str], Target | None]
    retrain: RetrainFn
    by: str  # who starts the retrainings, for the trigger ("hooks@HOST")
    debounce: float = 300.0
    cooldown: float = 3600.0
    clock: Callable[[], float] = time.monotonic
    retrainings: list[Retraining] = field(default_factory=list)
    _models: dict[str, _ModelState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def handle(self, note: Notification) -> tuple[list[Decision], list[str]]:
        """Decide on every alert of ``note``; start what is to start. (decisions, warnings)"""
        warnings = []
        if note.truncated:
            warnings.append(
                f"Alertmanager left out {note.truncated} alert(s) of this group (max_alerts): "
                "they were not considered"
            )
            log.warning("group %s: %s", note.group_key, warnings[-1])
        decisions = [self._decide(alert) for alert in note.alerts]
        for d in decisions:
            log.info("%s for %s: %s %s", d.alert, d.deployment or "-", d.outcome, d.detail)
        return decisions, warnings

    def _decide(self, alert: AlertItem) -> Decision:
        name, deployment = alert.name, alert.labels.get("deployment", "")
        if alert.status != "firing":
            return Decision(name, deployment, "resolved", "resolved notifications start nothing")
        if name not in RETRAIN_ALERTS:
            return Decision(name, deployment, "not a retraining alert")
        if not deployment:
            return Decision(name, "", "no deployment label", "cannot tell what to retrain")
        try:
            target = self.resolve(deployment)
        except BackendError as exc:
            return Decision(name, deployment, "unknown deployment", exc.message)
        if target is None:
            return Decision(name, deployment, "unknown deployment", "no such deployment here")
        trigger = RetrainTrigger(
            source="alertmanager",
            alert=name,
            labels=dict(alert.labels),
            starts_at=alert.starts_at,
            by=self.by,
        )
        now = self.clock()
        with self._lock:
            state = self._models.setdefault(target.model, _ModelState())
            if state.running:
                return Decision(name, deployment, "busy", f"{target.model} is retraining")
            if now - state.finished < self.cooldown:
                left = self.cooldown - (now - state.finished)
                return Decision(name, deployment, "cooling down", f"{left:.0f} s left")
            if now - state.last_trigger < self.debounce:
                return Decision(name, deployment, "debounced", f"{target.model} just triggered")
            state.running, state.last_trigger = True, now
            record = Retraining(target.model, deployment, trigger, time.time())
            self.retrainings.append(record)
        thread = threading.Thread(
            target=self._run, args=(target, trigger, record), name=f"retrain-{target.model}"
        )
        self._threads.append(thread)
        thread.start()
        return Decision(name, deployment, "started", f"retraining {target.model}")

    def _run(self, target: Target, trigger: RetrainTrigger, record: Retraining) -> None:
        try:
            outcome = self.retrain(target, trigger)
        except Exception as exc:  # a failed retraining is reported, never kills the server
            record.outcome = f"failed: {exc}"
            log.error("retraining %s for %s failed: %s", target.model, target.deployment, exc)
        else:
            record.outcome = outcome.gate
            record.challenger = outcome.challenger_version if outcome.gate_passed else None
            log.info("retraining %s: %s", target.model, outcome.gate)
        finally:
            record.finished = time.time()
            with self._lock:
                state = self._models[target.model]
                state.running, state.finished = False, self.clock()

    def wait(self, timeout: float | None = None) -> None:
        """Until every retraining started so far ended (tests, and a clean shutdown)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "retrainings": [
                    {
                        "model": r.model,
                        "deployment": r.deployment,
                        "trigger": r.trigger.summary(),
                        "started": r.started,
                        "finished": r.finished,
                        "outcome": r.outcome,
                        "challenger": r.challenger,
                    }
                    for r in self.retrainings
                ],
                "debounce_s": self.debounce,
                "cooldown_s": self.cooldown,
            }
