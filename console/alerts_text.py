"""How alerts, silences and silence plans read, alike in `mlops alerts` and the Alerts screen."""

from __future__ import annotations

from backends.records.alerts import (
    AlertGroup,
    AlertsView,
    ExpirePlan,
    ManagedAlert,
    Silence,
    SilencePlan,
)
from console import format as fmt

MAX_LISTED = 10  # alerts named in a plan; the rest are counted


def quiet_reason(alert: ManagedAlert, view: AlertsView) -> str:
    """Why a suppressed alert is quiet: by which silence, until when; or what inhibits it."""
    parts = []
    for silence_id in alert.silenced_by:
        silence = view.silence(silence_id)
        if silence is None:
            parts.append(f"silenced by {silence_id[:8]}")
        else:
            parts.append(
                f"silenced by {silence.short_id} until {fmt.when(silence.ends_at)}"
                f" ({silence.created_by}: {silence.comment})"
            )
    if alert.inhibited_by:
        inhibitors = {a.fingerprint: a for g in view.groups for a in g.alerts}
        names = [inhibitors[f].name if f in inhibitors else f[:8] for f in alert.inhibited_by]
        parts.append("inhibited by " + ", ".join(sorted(set(names))))
    return "; ".join(parts)


def extra_labels(alert: ManagedAlert, group: AlertGroup) -> dict[str, str]:
    """The alert's labels beyond its group's and the obvious ones (what tells alerts apart)."""
    hidden = {"alertname", "severity", "job", *group.labels}
    return {k: v for k, v in alert.labels.items() if k not in hidden}


def silence_matchers(silence: Silence) -> str:
    return ", ".join(str(m) for m in silence.matchers)


def silence_plan(plan: SilencePlan) -> str:
    """What posting this silence would do, before it is posted."""
    what = f"acknowledge group {plan.acknowledges}" if plan.acknowledges else "silence"
    lines = [
        f"{what}: {', '.join(str(m) for m in plan.matchers)}",
        f"  for {fmt.duration(plan.minutes * 60)} (until {fmt.when(plan.ends_at)}), "
        f"by {plan.created_by}: {plan.comment}",
        f"  matches {len(plan.matching)} alert{'s' if len(plan.matching) != 1 else ''} now",
    ]
    lines += [f"    {_alert_line(a)}" for a in plan.matching[:MAX_LISTED]]
    if len(plan.matching) > MAX_LISTED:
        lines.append(f"    ... and {len(plan.matching) - MAX_LISTED} more")
    if not plan.matching:
        lines.append("    (none yet: it also silences matching alerts that fire later)")
    return "\n".join(lines)


def expire_plan(plan: ExpirePlan) -> str:
    s = plan.silence
    lines = [
        f"expire silence {s.short_id}: {silence_matchers(s)}",
        f"  by {s.created_by} until {fmt.when(s.ends_at)}: {s.comment}",
        f"  {len(plan.matching)} alert{'s' if len(plan.matching) != 1 else ''} it quiets "
        "will notify again",
    ]
    lines += [f"    {_alert_line(a)}" for a in plan.matching[:MAX_LISTED]]
    return "\n".join(lines)


def _alert_line(alert: ManagedAlert) -> str:
    labels = fmt.pairs(
        {k: v for k, v in alert.labels.items() if k not in ("alertname", "job")}, limit=6
    )
    return f"{alert.name} {labels}"
