"""Training the example project: `mlops train` against `mlflow run` of the same project.

Both run the iris project (``-P n_estimators=10``) with the local environment against the same
real `mlflow server` (sqlite store, proxied artifacts), interleaved, each a fresh process from
launch to exit (imports included). Also timed: the entry point alone (``python train.py`` with
a run id handed over, what both runners start), the floor either can reach.

Target (issue 23.4): ours <= 0.5x `mlflow run`. Prints every figure, the ratio, and whether
the target is met.

    python bench/train.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from runs import start_server, stop_server  # noqa: E402  (the bench's one server launcher)

PROJECT = ROOT / "examples" / "iris"
PARAMS = ["-P", "n_estimators=10"]
TARGET = 0.5


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stdout[-2000:] + proc.stderr[-2000:]
        raise SystemExit(f"{cmd[1:3]} failed:\n{tail}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="mlops-bench-train-") as tmp:
        store = Path(tmp)
        server, url = start_server(store)
        try:
            env = dict(os.environ, MLFLOW_TRACKING_URI=url, MLOPS_STATE_DIR=str(store / "state"))
            env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
            env.pop("MLFLOW_EXPERIMENT_NAME", None)
            ours_cmd = [str(bin_dir / "mlops"), "train", str(PROJECT), *PARAMS, "-q"]
            peer_cmd = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "--env-manager"]
            peer_cmd += ["local", *PARAMS]
            floor_cmd = [sys.executable, "train.py", "--n-estimators", "10"]
            # One of each first: the server's first run in an experiment and cold file caches.
            timed(ours_cmd, env, ROOT)
            timed(peer_cmd, env, ROOT)
            ours, peer, floor = [], [], []
            for _ in range(args.repeat):
                ours.append(timed(ours_cmd, env, ROOT))
                peer.append(timed(peer_cmd, env, ROOT))
                floor.append(timed(floor_cmd, env, PROJECT))
        finally:
            stop_server(server)
    o, p, f = (statistics.median(xs) for xs in (ours, peer, floor))
    load = os.getloadavg()[0]
    print(f"load average {load:.1f}; median of {args.repeat}, interleaved")
    print(f"mlops train   {o:6.2f} s   ({', '.join(f'{x:.2f}' for x in ours)})")
    print(f"mlflow run    {p:6.2f} s   ({', '.join(f'{x:.2f}' for x in peer)})")
    print(f"train.py only {f:6.2f} s   (the entry point alone: the floor of both)")
    ratio = o / p
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"ours / mlflow run = {ratio:.2f} (target <= {TARGET}): {verdict}")
    print(f"ours above the entry point alone: {o - f:+.2f} s; mlflow run's: {p - f:+.2f} s")


if __name__ == "__main__":
    main()
