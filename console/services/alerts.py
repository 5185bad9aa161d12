"""Alert groups and silences: Alertmanager when the session names one, else Prometheus' own
alerts (read-only), else nothing to show and a line saying why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from backends.errors import InvalidInput
from console.services.session import Session

if TYPE_CHECKING:
    from backends.records.alerts import AlertsView, ExpirePlan, SilencePlan

NO_SOURCE = "none: set ALERTMANAGER_URL (or PROMETHEUS_URL for its alerts, read-only)"


class AlertingAlerts:
    """The alerts capability over the session's Alertmanager or Prometheus."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._manager: Any = None

    @property
    def alertmanager_url(self) -> str | None:
        return self.session.settings.alertmanager_url

    def alerts(self) -> AlertsView:
        if self.alertmanager_url:
            return self._alertmanager().view()  # type: ignore[no-any-return]
        prometheus = self.session.settings.prometheus_url
        if prometheus:
            from backends.prometheus.rule_alerts import rule_alerts_view

            return rule_alerts_view(prometheus)
        from backends.records.alerts import AlertsView

        return AlertsView(NO_SOURCE, True, datetime.now(UTC), ())

    def plan_acknowledge(self, group: str, minutes: float) -> SilencePlan:
        from backends.identity import current_user

        return self._writable().plan_acknowledge(group, minutes, current_user())  # type: ignore[no-any-return]

    def plan_silence(self, matchers: list[str], minutes: float, comment: str) -> SilencePlan:
        from backends.identity import current_user
        from backends.prometheus.matchers import parse_matchers

        parsed = parse_matchers(matchers)
        return self._writable().plan_silence(parsed, minutes, current_user(), comment)  # type: ignore[no-any-return]

    def silence(self, plan: SilencePlan) -> str:
        return self._writable().apply_silence(plan)  # type: ignore[no-any-return]

    def plan_expire(self, silence_id: str) -> ExpirePlan:
        return self._writable().plan_expire(silence_id)  # type: ignore[no-any-return]

    def expire(self, plan: ExpirePlan) -> None:
        self._writable().apply_expire(plan)

    def _writable(self) -> Any:
        if not self.alertmanager_url:
            raise InvalidInput(
                "no Alertmanager configured (ALERTMANAGER_URL): Prometheus' own alerts are "
                "read-only, there is nothing to acknowledge, silence or expire"
            )
        return self._alertmanager()

    def _alertmanager(self) -> Any:
        from backends.prometheus.alertmanager import Alertmanager

        if self._manager is None:
            self._manager = Alertmanager(self.alertmanager_url or "")
        return self._manager
