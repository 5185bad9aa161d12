"""The router's admin API, as the console drives it (``server/router_admin.py`` answers).

Every change carries the router's admin token, read from its volume. The router listens in the
engine host's network (``network_mode=host``), so its address is ``127.0.0.1:<its port label>``
on this host's engine, the engine host's address on another's (``engine.url_on``).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from backends.docker import hardening
from backends.docker.engine import LABEL, url_for
from backends.errors import BackendError, Conflict

__all__ = ["RouterApi", "Unresolved"]

UNRESOLVED_WAIT = 60.0  # seconds Swarm's DNS may take to list a service's running tasks


class Unresolved(Conflict):
    """The router refused a service upstream no task of which its DNS lists yet."""


class RouterApi:
    """``router``: the router's container (its volume holds the token); ``base``: where it
    answers, when not at its own port label on the engine's host (a swarm's router service,
    whose task container carries Swarm's labels only)."""

    def __init__(self, router: Any, timeout: float = 60.0, base: str | None = None) -> None:
        bound = router.labels.get(f"{LABEL}.host", "127.0.0.1")
        port = router.labels.get(f"{LABEL}.port", "8080")
        self.base = base or url_for(router.client, bound, port)
        self._router = router
        self._token: str | None = None
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            self._token = hardening.read_token(self._router)
        return {"Authorization": f"Bearer {self._token}"}

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One admin call. A service upstream Swarm's DNS does not list yet (its tasks run,
        their names come a moment later: 409 ``upstream_unresolved``) is asked again for up to
        ``UNRESOLVED_WAIT`` seconds: nothing changed meanwhile."""
        deadline = time.monotonic() + UNRESOLVED_WAIT
        while True:
            try:
                return self._call_once(method, path, body)
            except Unresolved:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _call_once(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            response = httpx.request(
                method,
                f"{self.base}/-/router/{path}",
                json=body,
                headers=self._headers(),
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                f"the router at {self.base} did not answer {method} {path}: {exc}",
                title="Router unreachable",
            ) from exc
        try:
            doc: dict[str, Any] = response.json()
        except ValueError:
            doc = {}
        if response.status_code == 409:
            error = doc.get("error") if isinstance(doc, dict) else None
            if isinstance(error, dict) and error.get("type") == "upstream_unresolved":
                raise Unresolved(_message(doc, response))
            raise Conflict(_message(doc, response))
        if response.status_code != 200:
            raise BackendError(
                f"the router refused {method} {path} ({response.status_code}): "
                f"{_message(doc, response)}",
                title="Router refused",
            )
        return doc

    def state(self) -> dict[str, Any]:
        return self._call("GET", "state")

    def set_canary(
        self, upstream: str, version: str, weight: float, sticky_header: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"upstream": upstream, "version": version, "weight": weight}
        if sticky_header:
            body["sticky_header"] = sticky_header
        return self._call("PUT", "canary", body)

    def set_weight(self, weight: float) -> dict[str, Any]:
        return self._call("PATCH", "canary", {"weight": weight})

    def remove_canary(self, drain_timeout: float = 30.0) -> dict[str, Any]:
        return self._call("DELETE", "canary", {"drain_timeout": drain_timeout})

    def set_mirror(self, upstream: str, version: str, percent: float) -> dict[str, Any]:
        return self._call(
            "PUT", "mirror", {"upstream": upstream, "version": version, "percent": percent}
        )

    def remove_mirror(self) -> dict[str, Any]:
        return self._call("DELETE", "mirror")

    def own_metrics(self) -> str:
        """The router's own figures (``/-/router/metrics``: its requests, the mirror's)."""
        try:
            response = httpx.get(
                f"{self.base}/-/router/metrics", headers=self._headers(), timeout=10
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                f"the router at {self.base} did not give its figures: {exc}",
                title="Router unreachable",
            ) from exc
        if response.status_code != 200:
            raise BackendError(
                f"the router at {self.base} refused its figures ({response.status_code})",
                title="Router refused",
            )
        return response.text

    def metrics(self, canary: bool = False) -> str | None:
        """The deployment's /metrics (the stable's, every task's on a swarm, then the
        router's own), or the canary's own; None when it does not answer."""
        path = "/-/router/canary/metrics" if canary else "/metrics"
        try:
            response = httpx.get(f"{self.base}{path}", timeout=10)
        except httpx.HTTPError:
            return None
        return response.text if response.status_code == 200 else None


def _message(doc: dict[str, Any], response: httpx.Response) -> str:
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return response.text[:300]
