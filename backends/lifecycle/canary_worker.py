"""The process that drives one canary release: ``python -m backends.lifecycle.canary_worker NAME``.

Started by `mlops deploy canary` (and by a resume when no worker is alive) in a session of its
own, on the tracking server and engine in its environment (MLFLOW_TRACKING_URI, DOCKER_HOST,
MLOPS_STATE_DIR as the starter had them). It exits when the release is promoted or aborted.
"""

from __future__ import annotations

import os
import sys
import time

from backends.errors import BackendError
from backends.lifecycle.canary import run_worker
from backends.lifecycle.handles import Handles


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m backends.lifecycle.canary_worker DEPLOYMENT", file=sys.stderr)
        return 2
    name = argv[0]
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} canary worker of {name} (pid {os.getpid()}) on {tracking_uri}", flush=True)
    with Handles(tracking_uri, os.environ.get("DOCKER_HOST")) as h:
        try:
            release = run_worker(h, name)
        except BackendError as exc:
            print(f"stopped: {exc.title}: {exc.message}", flush=True)
            return 1
    last = release.state.last
    print(f"{release.state.status}: {last.line if last else ''}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
