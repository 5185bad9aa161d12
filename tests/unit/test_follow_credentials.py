"""What a follow-alias container is given to read the registry as we do: secrets for its
credentials file (never its environment), the CA bundle's contents, the plain settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.docker.switch import follow_credentials
from backends.errors import InvalidInput


def test_secrets_plain_settings_and_the_ca_bundle_go_apart(tmp_path: Path) -> None:
    ca, client = tmp_path / "ca.pem", tmp_path / "client.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    client.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    secrets, files, plain = follow_credentials(
        {
            "MLFLOW_TRACKING_TOKEN": "t0k",
            "MLFLOW_TRACKING_PASSWORD": "pw",
            "MLFLOW_TRACKING_USERNAME": "ana",
            "MLFLOW_REGISTRY_URI": "postgresql://reg:pw@db/registry",
            "MLFLOW_TRACKING_SERVER_CERT_PATH": str(ca),
            "MLFLOW_TRACKING_CLIENT_CERT_PATH": str(client),
            "MLFLOW_TRACKING_INSECURE_TLS": "false",
            "AWS_SECRET_ACCESS_KEY": "not ours to pass",
        }
    )
    assert secrets == {
        "MLFLOW_TRACKING_TOKEN": "t0k",
        "MLFLOW_TRACKING_PASSWORD": "pw",
        "MLFLOW_TRACKING_USERNAME": "ana",
        "MLFLOW_REGISTRY_URI": "postgresql://reg:pw@db/registry",  # may carry a password
    }
    assert plain == {"MLFLOW_TRACKING_INSECURE_TLS": "false"}
    assert files == {
        "mlflow-ca.pem": b"-----BEGIN CERTIFICATE-----\n",
        "mlflow-client.pem": b"-----BEGIN PRIVATE KEY-----\n",
    }
    assert follow_credentials({}) == ({}, {}, {})


def test_a_ca_bundle_that_cannot_be_read_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(InvalidInput, match=f"MLFLOW_TRACKING_SERVER_CERT_PATH={missing}"):
        follow_credentials({"MLFLOW_TRACKING_SERVER_CERT_PATH": str(missing)})


def test_the_server_takes_mlflows_variables_from_the_file_and_nothing_else(
    tmp_path: Path,
) -> None:
    import json

    from server.config import load_credentials

    path = tmp_path / "mlflow-credentials.json"
    path.write_text(
        json.dumps(
            {
                "MLFLOW_TRACKING_TOKEN": "t0k",
                "MLFLOW_TRACKING_USERNAME": "ana",
                "MLOPS_ADMIN_TOKEN": "the file cannot set this",
                "PATH": "/evil",
            }
        )
    )
    env = {"MLOPS_CREDENTIALS_FILE": str(path), "MLFLOW_TRACKING_USERNAME": "set already"}
    assert load_credentials(env) == ["MLFLOW_TRACKING_TOKEN"]
    assert env["MLFLOW_TRACKING_TOKEN"] == "t0k"
    assert env["MLFLOW_TRACKING_USERNAME"] == "set already"
    assert "MLOPS_ADMIN_TOKEN" not in env and "PATH" not in env
    assert load_credentials({}) == []
    path.write_text("[1, 2]")
    with pytest.raises(SystemExit, match="not a JSON object"):
        load_credentials({"MLOPS_CREDENTIALS_FILE": str(path)})
    with pytest.raises(SystemExit, match="cannot read MLOPS_CREDENTIALS_FILE"):
        load_credentials({"MLOPS_CREDENTIALS_FILE": str(tmp_path / "absent.json")})
