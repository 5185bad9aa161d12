"""Alertmanager's v2 API: alert groups, silences, and acknowledging a group (a short silence).

Only our records leave this module. A group notified to several receivers (a route with
``continue: true``) is one group here, with its receivers listed, because an operator
acknowledges the alerts, not a route. Acknowledging is karma's: a silence on exactly the
group's labels, for a short time, in the operator's name.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from backends.errors import InvalidInput, NotFound, Unavailable
from backends.prometheus.matchers import check_silenceable, matches_all
from backends.records.alerts import (
    AlertGroup,
    AlertsView,
    ExpirePlan,
    ManagedAlert,
    Matcher,
    MatchOp,
    Silence,
    SilencePlan,
)

__all__ = ["Alertmanager", "group_id"]

MAX_SILENCE = timedelta(days=30)  # longer is a config change, not a silence
MAX_COMMENT = 1000


def group_id(labels: dict[str, str]) -> str:
    """A short id for a group's labels: the same group keeps it across refreshes."""
    digest = hashlib.sha1(json.dumps(sorted(labels.items())).encode()).hexdigest()
    return digest[:8]


class Alertmanager:
    """One Alertmanager, by base URL (e.g. http://localhost:9093)."""

    def __init__(self, url: str, timeout: float = 5.0, http: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = http or httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------------ reads

    def view(self) -> AlertsView:
        """Groups (silenced and inhibited included) and the silences, in one refresh."""
        groups = self._get("/api/v2/alerts/groups")
        silences = self._get("/api/v2/silences")
        if not isinstance(groups, list) or not isinstance(silences, list):
            raise Unavailable(f"{self.url} does not answer like Alertmanager's v2 API")
        return AlertsView(
            source=f"alertmanager {self.url}",
            read_only=False,
            taken_at=datetime.now(UTC),
            groups=_merge_groups(groups),
            silences=tuple(
                sorted(
                    (_silence(s) for s in silences if isinstance(s, dict)),
                    key=lambda s: (
                        s.state != "active",
                        s.state != "pending",
                        -s.ends_at.timestamp(),
                    ),
                )
            ),
        )

    def status(self) -> dict[str, Any]:
        found = self._get("/api/v2/status")
        return found if isinstance(found, dict) else {}

    # ------------------------------------------------------------------ plans

    def plan_silence(
        self,
        matchers: tuple[Matcher, ...],
        minutes: float,
        created_by: str,
        comment: str,
        acknowledges: str = "",
    ) -> SilencePlan:
        """The silence as it would be posted, and the alerts it would match now."""
        check_silenceable(matchers)
        if not 0 < minutes <= MAX_SILENCE.total_seconds() / 60:
            raise InvalidInput(
                f"a silence lasts more than 0 and at most {MAX_SILENCE.days} days "
                f"(got {minutes:g} minutes)"
            )
        if not created_by.strip():
            raise InvalidInput("a silence needs an author (who is silencing)")
        if len(comment) > MAX_COMMENT:
            raise InvalidInput(
                f"comment too long ({len(comment)} characters; at most {MAX_COMMENT})"
            )
        view = self.view()
        matching = tuple(
            a for g in view.groups for a in g.alerts if matches_all(matchers, a.labels)
        )
        now = datetime.now(UTC)
        return SilencePlan(
            matchers=matchers,
            starts_at=now,
            ends_at=now + timedelta(minutes=minutes),
            created_by=created_by,
            comment=comment or "silenced from mlops-console",
            matching=_unique(matching),
            acknowledges=acknowledges,
        )

    def plan_acknowledge(self, group: str, minutes: float, created_by: str) -> SilencePlan:
        """A silence on exactly the labels of the group whose id (or id prefix) is ``group``."""
        found = self.find_group(group)
        if not found.labels:
            raise InvalidInput(
                f"group {found.id} has no labels (the route groups all alerts together): "
                "silence it with explicit matchers instead"
            )
        matchers = tuple(Matcher(k, v) for k, v in sorted(found.labels.items()))
        return self.plan_silence(
            matchers,
            minutes,
            created_by,
            f"acknowledged by {created_by} from mlops-console",
            acknowledges=found.id,
        )

    def plan_expire(self, silence_id: str) -> ExpirePlan:
        silence = self.find_silence(silence_id)
        if silence.state == "expired":
            raise InvalidInput(f"silence {silence.short_id} has already expired")
        view = self.view()
        quieted = tuple(a for g in view.groups for a in g.alerts if silence.id in a.silenced_by)
        return ExpirePlan(silence, _unique(quieted))

    def find_group(self, group: str) -> AlertGroup:
        groups = [g for g in self.view().groups if g.id.startswith(group.strip())]
        if not group.strip() or not groups:
            raise NotFound(f"no alert group {group!r} (mlops alerts list shows their ids)")
        if len(groups) > 1:
            raise InvalidInput(f"{group!r} names {len(groups)} groups; give more of the id")
        return groups[0]

    def find_silence(self, silence_id: str) -> Silence:
        wanted = silence_id.strip()
        found = [s for s in self.view().silences if wanted and s.id.startswith(wanted)]
        if not found:
            raise NotFound(f"no silence {silence_id!r} (mlops alerts list --silences)")
        if len(found) > 1:
            raise InvalidInput(f"{silence_id!r} names {len(found)} silences; give more of the id")
        return found[0]

    # ------------------------------------------------------------------ changes

    def apply_silence(self, plan: SilencePlan) -> str:
        """Post the silence as planned (for its planned duration from now); its id."""
        now = datetime.now(UTC)
        body = {
            "matchers": [
                {
                    "name": m.name,
                    "value": m.value,
                    "isRegex": m.is_regex,
                    "isEqual": m.is_equal,
                }
                for m in plan.matchers
            ],
            "startsAt": _iso(now),
            "endsAt": _iso(now + (plan.ends_at - plan.starts_at)),
            "createdBy": plan.created_by,
            "comment": plan.comment,
        }
        answer = self._send("POST", "/api/v2/silences", body)
        silence_id = answer.get("silenceID") if isinstance(answer, dict) else None
        if not isinstance(silence_id, str) or not silence_id:
            raise Unavailable(f"{self.url} accepted the silence but returned no id")
        return silence_id

    def apply_expire(self, plan: ExpirePlan) -> None:
        current = self.find_silence(plan.silence.id)
        if current.state == "expired":
            raise InvalidInput(f"silence {current.short_id} has already expired")
        self._send("DELETE", f"/api/v2/silence/{plan.silence.id}")

    # ------------------------------------------------------------------ HTTP

    def _get(self, path: str) -> Any:
        return self._send("GET", path)

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, f"{self.url}{path}", json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"Alertmanager at {self.url} is unreachable ({exc.__class__.__name__})",
                title="Alertmanager unreachable",
            ) from exc
        if response.status_code == 404:
            raise NotFound(f"Alertmanager at {self.url} has no {path} ({_reason(response)})")
        if 400 <= response.status_code < 500:
            raise InvalidInput(f"Alertmanager refused it: {_reason(response)}")
        if response.status_code >= 500:
            raise Unavailable(
                f"Alertmanager at {self.url} failed ({response.status_code}: {_reason(response)})",
                title="Alertmanager failed",
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise Unavailable(
                f"{self.url}{path} did not answer JSON: is it Alertmanager?"
            ) from None


def _reason(response: httpx.Response) -> str:
    try:
        found = response.json()
    except ValueError:
        return response.text.strip()[:300] or str(response.status_code)
    if isinstance(found, dict):
        return str(found.get("message") or found.get("error") or found)[:300]
    return str(found)[:300]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _alert(raw: dict[str, Any]) -> ManagedAlert:
    status = _mapping(raw.get("status"))
    labels = _strings(raw.get("labels"))
    state = str(status.get("state") or "unprocessed")
    return ManagedAlert(
        name=labels.get("alertname", ""),
        labels=labels,
        annotations=_strings(raw.get("annotations")),
        state=state if state in ("active", "suppressed", "unprocessed") else "unprocessed",  # type: ignore[arg-type]
        starts_at=_time(raw.get("startsAt")),
        fingerprint=str(raw.get("fingerprint") or ""),
        silenced_by=tuple(str(s) for s in status.get("silencedBy") or ()),
        inhibited_by=tuple(str(s) for s in status.get("inhibitedBy") or ()),
        receivers=tuple(
            str(r.get("name")) for r in raw.get("receivers") or () if isinstance(r, dict)
        ),
    )


def _merge_groups(raw_groups: list[Any]) -> tuple[AlertGroup, ...]:
    """One group per label set, whichever receivers it went to; most urgent first."""
    merged: dict[str, tuple[dict[str, str], list[str], dict[str, ManagedAlert]]] = {}
    for raw in raw_groups:
        if not isinstance(raw, dict):
            continue
        labels = _strings(raw.get("labels"))
        receiver = _mapping(raw.get("receiver"))
        key = group_id(labels)
        _, receivers, alerts = merged.setdefault(key, (labels, [], {}))
        name = str(receiver.get("name") or "")
        if name and name not in receivers:
            receivers.append(name)
        for item in raw.get("alerts") or ():
            if isinstance(item, dict):
                alert = _alert(item)
                alerts.setdefault(
                    alert.fingerprint or json.dumps(sorted(alert.labels.items())), alert
                )
    groups = [
        AlertGroup(
            id=key,
            labels=labels,
            receiver=", ".join(receivers),
            alerts=tuple(sorted(alerts.values(), key=lambda a: sorted(a.labels.items()))),
        )
        for key, (labels, receivers, alerts) in merged.items()
    ]
    order = {"active": 0, "firing": 0, "pending": 1, "unprocessed": 2}
    groups.sort(
        key=lambda g: (
            order.get(g.state, 3),
            not any(a.severity == "critical" for a in g.alerts),
            g.title,
        )
    )
    return tuple(groups)


def _silence(raw: dict[str, Any]) -> Silence:
    status = _mapping(raw.get("status"))
    matchers = []
    for m in raw.get("matchers") or ():
        if not isinstance(m, dict):
            continue
        regex, equal = bool(m.get("isRegex")), m.get("isEqual", True) is not False
        op: MatchOp = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
        matchers.append(Matcher(str(m.get("name", "")), str(m.get("value", "")), op))
    state = str(status.get("state") or "active")
    epoch = datetime.fromtimestamp(0, UTC)
    return Silence(
        id=str(raw.get("id") or ""),
        matchers=tuple(matchers),
        created_by=str(raw.get("createdBy") or ""),
        comment=str(raw.get("comment") or ""),
        starts_at=_time(raw.get("startsAt")) or epoch,
        ends_at=_time(raw.get("endsAt")) or epoch,
        state=state if state in ("active", "pending", "expired") else "active",  # type: ignore[arg-type]
    )


def _unique(alerts: tuple[ManagedAlert, ...]) -> tuple[ManagedAlert, ...]:
    seen: dict[str, ManagedAlert] = {}
    for a in alerts:
        seen.setdefault(a.fingerprint or json.dumps(sorted(a.labels.items())), a)
    return tuple(seen.values())
