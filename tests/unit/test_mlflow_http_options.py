"""The probe asks the tracking server as MLflow's own client would: its credential and TLS
variables become the request's auth and verification (the token case is tested end to end in
tests/integration/test_mlflow_credentials.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.errors import InvalidInput
from backends.mlflow.client import http_options

VARIABLES = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def test_nothing_set_sends_nothing() -> None:
    assert http_options() == {}


def test_user_and_password_win_over_a_token_as_in_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t")
    assert http_options() == {"headers": {"Authorization": "Bearer t"}}
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    assert http_options() == {"auth": ("ana", "pw")}  # mlflow.utils.rest_utils' order


@pytest.mark.parametrize("value", ["true", "1", "TRUE", " True "])
def test_insecure_tls_as_mlflow_reads_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/no/such/ca.pem")
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", value)
    assert http_options()["verify"] is False  # as MLflow: it wins over a CA bundle


def test_a_ca_bundle_and_a_client_certificate_make_a_tls_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    from tests.proxies import self_signed_certificate

    cert, key = self_signed_certificate(tmp_path)
    both = tmp_path / "client.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(both))
    verify = http_options()["verify"]
    assert isinstance(verify, ssl.SSLContext) and verify.cert_store_stats()["x509_ca"] == 1
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "absent.pem"))
    with pytest.raises(InvalidInput, match="MLFLOW_TRACKING_SERVER_CERT_PATH"):
        http_options()
