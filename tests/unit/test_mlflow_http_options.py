"""The probe asks the tracking server as MLflow's own client would: its credential and TLS
variables become the request's auth and verification (the token case is tested end to end in
tests/integration/test_mlflow_credentials.py)."""

from __future__ import annotations

import pytest

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


def test_user_and_password_are_basic_auth_and_a_token_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    assert http_options() == {"auth": ("ana", "pw")}
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t")
    assert http_options() == {"headers": {"Authorization": "Bearer t"}}


def test_tls_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", "/ca.pem")
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", "/client.pem")
    assert http_options() == {"verify": "/ca.pem", "cert": "/client.pem"}
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")  # as MLflow: it wins over a CA
    assert http_options()["verify"] is False
