"""Property-based fuzzing of the real server from its own OpenAPI document: no 5xx, ever."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_server_error(served_model: str, tmp_path: Path) -> None:
    st = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(st),
            "run",
            f"{served_model}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "60",
            "--seed",
            "1",
            "--generation-deterministic",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "/predict" in output and "/invocations" in output
