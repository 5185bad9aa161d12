"""Whether MLflow, Docker and the metrics source answer, for the status bar."""

from __future__ import annotations

from backends.errors import BackendError, Unavailable
from console.capabilities import BackendName
from console.services.session import Session


class BackendProbes:
    """Probes the session's backends (cheap calls, short timeouts)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def probe(self, backend: BackendName) -> None:
        if backend == "mlflow":
            self._probe_tracking()
        elif backend == "docker":
            try:
                self.session.docker().ping()
            except BackendError:
                raise
            except Exception as exc:
                self.session.handles().forget_docker()  # reconnect on the next probe
                raise Unavailable(f"Docker engine did not answer: {exc}") from exc
        elif self.session.settings.prometheus_url:
            import httpx

            url = self.session.settings.prometheus_url.rstrip("/") + "/-/ready"
            try:
                httpx.get(url, timeout=3).raise_for_status()
            except httpx.HTTPError as exc:
                raise Unavailable(f"Prometheus at {url} did not answer: {exc}") from exc

    def _probe_tracking(self) -> None:
        uri = self.session.settings.tracking_uri
        if uri.startswith(("http://", "https://")):
            from backends.mlflow.client import probe_stores

            # With MLflow's own token and TLS settings, as the SDK will call them; the model
            # registry too when MLFLOW_REGISTRY_URI puts it elsewhere.
            probe_stores(uri)
        else:
            self.session.handles().registry().list_models()
