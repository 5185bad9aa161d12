"""The server's limits: on by default, each one configurable, a token from a mounted file."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ServerConfig


def test_every_limit_is_on_by_default() -> None:
    config = ServerConfig.from_env("m")
    assert config.max_body_bytes == 5 * 1024 * 1024 and config.max_rows == 100_000
    assert 0 < config.body_timeout <= 30  # a trickled body is cut off within 30 s
    assert 0 < config.header_timeout <= 30
    assert config.max_in_flight > 0 and config.keep_alive > 30  # longer than the router's pool
    assert config.drift_stale_after > 0 and not config.public_docs


def test_every_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "MLOPS_MAX_ROWS": "10",
        "MLOPS_MAX_IN_FLIGHT": "3",
        "MLOPS_BODY_TIMEOUT": "2.5",
        "MLOPS_HEADER_TIMEOUT": "1.5",
        "MLOPS_KEEP_ALIVE": "9",
        "MLOPS_DRIFT_STALE_AFTER": "60",
        "MLOPS_PUBLIC_DOCS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    config = ServerConfig.from_env("m")
    assert (config.max_rows, config.max_in_flight) == (10, 3)
    assert (config.body_timeout, config.header_timeout, config.keep_alive) == (2.5, 1.5, 9.0)
    assert config.drift_stale_after == 60.0 and config.public_docs


def test_the_admin_token_comes_from_a_mounted_file_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-the-file\n")
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", "from-the-env")
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN_FILE", str(secret))
    assert ServerConfig.from_env("m").admin_token == "from-the-file"
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(SystemExit, match="cannot read MLOPS_ADMIN_TOKEN_FILE"):
        ServerConfig.from_env("m")
