"""MLflow's own variables are honoured everywhere, the probes included: a registry apart from
the tracking server (MLFLOW_REGISTRY_URI), a tracking server behind a gateway that wants a
token, and one behind TLS with a certificate of its own CA, reached by the probe, the registry
client and `mlops` under a context whose file names the variable holding the token (never the
token)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.errors import Unavailable
from backends.mlflow.client import probe
from backends.mlflow.registry import Registry
from tests import services
from tests.proxies import RelayProxy, self_signed_certificate

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]

TOKEN = "tok-3f9c2a7d1e"
CLEARED = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_INSECURE_TLS",
)


@pytest.fixture
def guarded(
    mlflow_server: services.MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RelayProxy, Path]]:
    """The run's tracking server behind TLS (its own CA) and a token check."""
    for variable in CLEARED:
        monkeypatch.delenv(variable, raising=False)
    cert, key = self_signed_certificate(tmp_path)
    proxy = RelayProxy(mlflow_server.url, token=TOKEN, tls=(cert, key))
    yield proxy, cert
    proxy.close()


def test_probe_and_client_use_mlflows_token_and_ca_variables(
    guarded: tuple[RelayProxy, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy, ca = guarded
    with pytest.raises(Unavailable, match="certificate is not trusted"):
        probe(proxy.url)
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(ca))
    with pytest.raises(Unavailable, match=r"refused our credentials \(401; sent: none"):
        probe(proxy.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "wrong")
    with pytest.raises(Unavailable, match="401; sent: a token"):
        probe(proxy.url)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    probe(proxy.url)
    before = proxy.seen["with_token"]
    Registry(proxy.url).list_models()  # MLflow's own client, through the same variables
    assert proxy.seen["with_token"] > before

    # The console's status-bar probe is the same check.
    from console.config import Settings
    from console.services.probes import BackendProbes
    from console.services.session import Session

    session = Session(
        Settings(tracking_uri=proxy.url, docker_host=None, prometheus_url=None, context="t")
    )
    BackendProbes(session).probe("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    with pytest.raises(Unavailable, match="refused our credentials"):
        BackendProbes(session).probe("mlflow")


def test_a_context_names_the_variable_that_holds_the_token(
    guarded: tuple[RelayProxy, Path], tmp_path: Path
) -> None:
    proxy, ca = guarded
    config = tmp_path / "config.toml"
    config.write_text(
        'current_context = "guarded"\n'
        "[contexts.guarded]\n"
        f'tracking_uri = "{proxy.url}"\n'
        f'ca_cert = "{ca}"\n'
        'credentials = { MLFLOW_TRACKING_TOKEN = "GUARDED_MLFLOW_TOKEN" }\n'
    )
    ambient = (*CLEARED, "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLOPS_CONTEXT")
    env = {k: v for k, v in os.environ.items() if k not in ambient}
    env["MLOPS_CONFIG"] = str(config)
    mlops = [str(Path(sys.executable).parent / "mlops")]

    refused = subprocess.run(
        [*mlops, "models", "list", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert refused.returncode == 3, refused.stderr  # no $GUARDED_MLFLOW_TOKEN: refused, said
    assert "refused our credentials" in refused.stderr

    env["GUARDED_MLFLOW_TOKEN"] = TOKEN
    listed = subprocess.run(
        [*mlops, "models", "list", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    shown = subprocess.run(
        [*mlops, "context", "show"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "MLFLOW_TRACKING_TOKEN: $GUARDED_MLFLOW_TOKEN (set)" in shown.stdout
    assert TOKEN not in shown.stdout + shown.stderr


def test_a_registry_apart_from_the_tracking_server_is_used_and_probed(
    mlflow_server: services.MlflowServer,
    mlflow_server_on_postgres: services.MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import uuid

    from mlflow.tracking import MlflowClient

    from backends.mlflow.client import connect

    tracking, registry = mlflow_server.url, mlflow_server_on_postgres.url
    name = f"split-{uuid.uuid4().hex[:8]}"
    on_registry = MlflowClient(registry, registry_uri=registry)
    on_registry.create_registered_model(name)
    on_registry.create_model_version(name, source="s3://models/split/1")
    on_registry.set_registered_model_alias(name, "champion", "1")

    monkeypatch.setenv("MLFLOW_REGISTRY_URI", registry)
    ours = Registry(tracking)
    assert name in [m.name for m in ours.list_models()]  # read from the registry, not tracking
    assert ours.resolve(f"{name}@champion").version == 1
    with pytest.raises(Exception, match=r"not found|RESOURCE_DOES_NOT_EXIST|does not exist"):
        MlflowClient(tracking, registry_uri=tracking).get_registered_model(name)

    # A registry that is down is said to be, by name, before anything is asked of it.
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"http://127.0.0.1:{services.free_port()}")
    with pytest.raises(
        Unavailable, match=r"MLflow model registry http://127\.0\.0\.1:\d+ is unreachable"
    ):
        connect(tracking)
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["MLFLOW_TRACKING_URI"] = tracking
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), "models", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert listed.returncode == 3 and "model registry" in listed.stderr, listed.stderr
