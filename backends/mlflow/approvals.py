"""What a challenger carries for the person who approves it: its gate report and its trigger,
kept in the model version's own tags (and the trigger on the training run too), so that every
operator, the MLflow UI included, sees why a version waits and what it was judged on.

* ``mlops.gate.report``: JSON, the comparison with the champion and every check of the gate.
* ``mlops.retrain.trigger``: JSON, the alert (name, labels, startsAt) or the person that
  started the retraining.

Tags anyone with edit rights can write are read leniently: a value that does not parse reads
as absent (the approver then sees "no gate report"), never as a crash.
"""

from __future__ import annotations

import json
from typing import Any

from backends.mlflow.history_tags import MAX_VALUE
from backends.records import GateCheck, GateReport, RetrainTrigger

__all__ = [
    "REPORT_TAG",
    "TRIGGER_TAG",
    "decode_report",
    "decode_trigger",
    "encode_report",
    "encode_trigger",
]

REPORT_TAG = "mlops.gate.report"
TRIGGER_TAG = "mlops.retrain.trigger"
_DETAIL = 400  # characters of one check's detail kept; the whole value fits MAX_VALUE


def encode_trigger(trigger: RetrainTrigger) -> str:
    labels = {str(k)[:200]: str(v)[:500] for k, v in list(trigger.labels.items())[:30]}
    while True:
        value = {
            "source": trigger.source,
            "alert": trigger.alert[:200],
            "labels": labels,
            "startsAt": trigger.starts_at[:40],
            "by": trigger.by[:200],
        }
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        if len(text) <= MAX_VALUE or not labels:
            return text[:MAX_VALUE]
        # Labels we did not choose, over the store's limit: the longest goes first.
        labels.pop(max(labels, key=lambda k: len(labels[k])))


def decode_trigger(text: str | None) -> RetrainTrigger | None:
    data = _object(text)
    if data is None or not isinstance(data.get("source"), str):
        return None
    labels = data.get("labels")
    return RetrainTrigger(
        source=data["source"],
        alert=str(data.get("alert") or ""),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        starts_at=str(data.get("startsAt") or ""),
        by=str(data.get("by") or ""),
    )


def encode_report(report: GateReport) -> str:
    checks = [
        {"name": c.name, "passed": c.passed, "detail": c.detail[:_DETAIL]} for c in report.checks
    ]
    value: dict[str, Any] = {
        "comparison": report.comparison[:1000],
        "checks": checks,
        "passed": report.passed,
        "champion": report.champion_version,
        "at": report.at,
    }
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    while len(text) > MAX_VALUE and value["checks"]:
        # Over the store's limit: the passing checks' details go first, then checks.
        passing = [c for c in value["checks"] if c["passed"] and c["detail"]]
        if passing:
            passing[-1]["detail"] = ""
        else:
            value["checks"] = value["checks"][:-1]
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text


def decode_report(text: str | None) -> GateReport | None:
    data = _object(text)
    if data is None or not isinstance(data.get("passed"), bool):
        return None
    checks = []
    for c in data.get("checks") or []:
        if isinstance(c, dict) and isinstance(c.get("name"), str):
            checks.append(GateCheck(c["name"], bool(c.get("passed")), str(c.get("detail") or "")))
    champion = data.get("champion")
    return GateReport(
        comparison=str(data.get("comparison") or ""),
        checks=tuple(checks),
        passed=data["passed"],
        champion_version=champion if isinstance(champion, int) else None,
        at=str(data.get("at") or ""),
    )


def _object(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
