"""Prometheus' own alerts (``/api/v1/alerts``), for a console with no Alertmanager: read-only.

Grouped as the shipped Alertmanager route groups them (``alertname``, ``deployment``), so the
Alerts screen looks the same with or without one; nothing can be acknowledged or silenced,
because Prometheus keeps no silences.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx

from backends.errors import Unavailable
from backends.prometheus.alertmanager import group_id
from backends.records.alerts import AlertGroup, AlertsView, ManagedAlert, ManagedState

__all__ = ["GROUP_BY", "rule_alerts_view"]

GROUP_BY = ("alertname", "deployment")  # deploy/alertmanager/alertmanager.yml's route


def rule_alerts_view(url: str, timeout: float = 5.0) -> AlertsView:
    """Prometheus' pending and firing alerts, grouped, marked read-only."""
    base = url.rstrip("/")
    try:
        response = httpx.get(f"{base}/api/v1/alerts", timeout=timeout)
        payload = response.json()
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"Prometheus at {base} is unreachable ({exc.__class__.__name__})",
            title="Prometheus unreachable",
        ) from exc
    except ValueError:
        raise Unavailable(f"{base}/api/v1/alerts did not answer JSON: is it Prometheus?") from None
    alerts = payload.get("data", {}).get("alerts") if isinstance(payload, dict) else None
    if response.status_code != 200 or not isinstance(alerts, list):
        raise Unavailable(f"Prometheus at {base} did not list its alerts ({response.status_code})")
    grouped: dict[str, tuple[dict[str, str], list[ManagedAlert]]] = {}
    for raw in alerts:
        if not isinstance(raw, dict):
            continue
        alert = _alert(raw)
        labels = {k: alert.labels[k] for k in GROUP_BY if k in alert.labels}
        grouped.setdefault(group_id(labels), (labels, []))[1].append(alert)
    groups = [
        AlertGroup(
            id=key,
            labels=labels,
            receiver="",
            alerts=tuple(sorted(found, key=lambda a: sorted(a.labels.items()))),
        )
        for key, (labels, found) in grouped.items()
    ]
    groups.sort(key=lambda g: (g.state != "firing", g.title))
    return AlertsView(
        source=f"prometheus {base} (read-only: no Alertmanager; set ALERTMANAGER_URL)",
        read_only=True,
        taken_at=datetime.now(UTC),
        groups=tuple(groups),
    )


def _alert(raw: dict[str, Any]) -> ManagedAlert:
    labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (raw.get("annotations") or {}).items()}
    state: ManagedState = "firing" if raw.get("state") == "firing" else "pending"
    active = raw.get("activeAt")
    try:
        since = datetime.fromisoformat(active) if isinstance(active, str) else None
    except ValueError:
        since = None
    return ManagedAlert(
        name=labels.get("alertname", ""),
        labels=labels,
        annotations=annotations,
        state=state,
        starts_at=since,
        fingerprint=json.dumps(sorted(labels.items())),
    )
