"""What the engine tests share: the `mlops` CLI run as a subprocess, and steady clients through
a deployment's router recording every answer's status and the version that gave it."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests import services
from tests.server.conftest import FEATURES, iris_frame
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]


def mlops(
    *args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 400
) -> subprocess.CompletedProcess[str]:
    """`mlops ARGS` in a fresh interpreter with ``env`` (and the venv on PATH), as a shell
    would run it; what it printed and its exit code."""
    return subprocess.run(
        [sys.executable, "-c", "from console.cli.main import run; run()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=services.env_with_venv_on_path(**env),
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass
class Load:
    """Steady clients through the router: every answer's status and the version that gave it."""

    url: str
    answers: list[tuple[int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        rows = iris_frame()[FEATURES].values.tolist()

        def client(offset: int) -> None:
            with httpx.Client(timeout=60) as http:
                i = offset
                while not self.stop.is_set():
                    i += 7
                    try:
                        r = http.post(f"{self.url}/predict", json={"data": [rows[i % len(rows)]]})
                        version = (r.json() if r.is_success else {}).get("model", {}).get("version")
                        self.answers.append((r.status_code, str(version or "")))
                    except httpx.HTTPError as exc:
                        self.answers.append((0, exc.__class__.__name__))
                    self.stop.wait(services.LOAD_PACE)

        self.threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def failed(self) -> list[tuple[int, str]]:
        return [a for a in self.answers if a[0] != 200]

    def wait_for(self, version: str) -> None:
        start = len(self.answers)
        eventually(
            lambda: any(v == version for _, v in self.answers[start:]),
            f"answers from v{version}",
            timeout=120,
        )
