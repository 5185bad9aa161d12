"""The serving image: its size, an unchanged rebuild, another version's build, a container's
start to /ready — against the targets of issue 23.5, with the local base image as the floor.

Against a real `mlflow server` (sqlite, proxied artifacts) it trains and registers two versions
of the example project, then times `mlops image build` of v1 (whatever the cache holds), of v1
again (unchanged: every step from cache), of v2 (only the model layers are new), and three
starts of v1's container until /ready answers. Prints every figure and each target as met or
not. Targets: image <= 363 MB (half of the 727 MB measured on 2026-12-06 before the
dependencies stage), unchanged rebuild <= 3 s, ready <= 2 s after start.

    python bench/image.py
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from runs import free_port, start_server, stop_server  # noqa: E402

TARGET_MB, TARGET_REBUILD_S, TARGET_READY_S = 363, 3.0, 2.0


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return took, proc.stdout + proc.stderr


def ready_after(image: str) -> float:
    port = free_port()
    start = time.perf_counter()
    cid = subprocess.run(
        ["docker", "run", "-d", "--network", "host", "-e", f"MLOPS_PORT={port}", image],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        import httpx

        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            if time.perf_counter() - start > 300:
                raise SystemExit(f"{image} not ready after 300 s")
            time.sleep(0.05)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def main() -> None:
    mlops = str(Path(sys.executable).parent / "mlops")
    with tempfile.TemporaryDirectory(prefix="mlops-bench-image-") as tmp:
        store = Path(tmp)
        server, url = start_server(store)
        try:
            env = dict(os.environ, MLFLOW_TRACKING_URI=url, MLOPS_STATE_DIR=str(store / "state"))
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            model = f"bench-image-{os.getpid()}"
            for trees in (10, 12):
                run([mlops, "train", "-P", f"n_estimators={trees}", "-q", "--register-as", model],
                    env)  # fmt: skip
            first, _ = run([mlops, "image", "build", f"{model}/1"], env)
            again, out = run([mlops, "image", "build", f"{model}/1"], env)
            other, out2 = run([mlops, "image", "build", f"{model}/2"], env)
        finally:
            stop_server(server)
    found = re.search(r"built (\S+) \(.*?, (\d+) MB", out)
    assert found, out
    image, size = found.group(1), int(found.group(2))
    cached = "every step from cache" in out
    base = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", "mlops-base:bookworm"],
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    readies = [ready_after(image) for _ in range(3)]
    ready = statistics.median(readies)
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"image {image}: {size} MB (local base {int(base or 0) // 1_000_000} MB)")
    print(f"build v1 {first:.1f} s; unchanged rebuild {again:.1f} s (all cache: {cached}); "
          f"v2 {other:.1f} s")  # fmt: skip
    print(f"ready after start: {', '.join(f'{r:.2f}' for r in readies)} s (median {ready:.2f})")
    for what, value, target, unit in (
        ("size", size, TARGET_MB, "MB"),
        ("unchanged rebuild", again, TARGET_REBUILD_S, "s"),
        ("ready after start", ready, TARGET_READY_S, "s"),
    ):
        verdict = "met" if value <= target else "NOT met"
        print(f"{what}: {value:.4g} {unit} (target <= {target:g} {unit}): {verdict}")
    subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    for built in re.findall(r"built (\S+) \(", out2):
        subprocess.run(["docker", "rmi", "-f", built], capture_output=True)


if __name__ == "__main__":
    main()
