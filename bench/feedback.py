"""The prediction log's cost and the label ingest rate, each against a peer in the same run.

1. Serving with the prediction log on (every request logged, ``MLOPS_LOG_SAMPLE=1``) against
   the same server with it off: single-row `/invocations` under wrk at concurrency 32, the two
   interleaved (off, on, off, on) so a machine that slows down mid-run hurts both alike.
   Target (issue 17): with the log >= 90 % of the throughput without it.
2. Label ingest: `mlops feedback push`'s path (``backends.lifecycle.feedback.push_labels``,
   batches of 5,000) for 50,000 labels of logged predictions, against the per-label API most
   feedback endpoints offer (one ``POST /feedback`` per label, as Seldon's does; a keep-alive
   client, 2,000 labels, rate extrapolated). Target: >= 10,000 labels/s.

Usage: python bench/feedback.py [--seconds 10] [--json results.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serve import SPLIT_BODY, free_port, start, stop, train_model, wrk

ROW = [5.9, 3.0, 5.1, 1.8]


def serve(model: Path, log_dir: Path | None, tmp: Path, tag: str) -> tuple[str, object]:
    py = sys.executable
    env = dict(os.environ, PATH=f"{Path(py).parent}:{os.environ.get('PATH', '')}")
    env.pop("MLOPS_LOG_DIR", None)
    if log_dir is not None:
        env.update(MLOPS_LOG_DIR=str(log_dir), MLOPS_LOG_SAMPLE="1")
    port = free_port()
    cmd = [py, "-m", "server", "--model-uri", str(model), "--port", str(port)]
    cmd += ["--log-level", "warning"]
    proc = start(cmd, f"http://127.0.0.1:{port}/ready", env, tmp / f"server-{tag}.log")
    return f"http://127.0.0.1:{port}", proc


def logged_rows(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith('mlops_prediction_log_rows_total{kind="predictions"}'):
            return float(line.split()[-1])
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--labels", type=int, default=50_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-feedback-"))
    model = train_model(tmp)
    results: dict[str, object] = {}

    # 1. Throughput with and without the log, interleaved.
    runs: dict[str, list[float]] = {"off": [], "on": []}
    for i, mode in enumerate(["off", "on", "off", "on"]):
        log_dir = tmp / f"log-{i}" if mode == "on" else None
        url, proc = serve(model, log_dir, tmp, f"{mode}-{i}")
        try:
            wrk(f"{url}/invocations", SPLIT_BODY, 32, 2)  # warm up
            got = wrk(f"{url}/invocations", SPLIT_BODY, 32, args.seconds)
            if got["errors"]:
                raise SystemExit(f"log {mode}: {got['errors']} failed requests")
            runs[mode].append(got["rps"])
            line = f"log {mode:3}: {got['rps']:7.0f} req/s, p50 {got['p50_ms']:.1f} ms, "
            line += f"p99 {got['p99_ms']:.1f} ms"
            if mode == "on":
                time.sleep(1.0)  # the writer catches up
                answered = int(got["requests"])
                line += f", {logged_rows(url):.0f} rows logged ({answered} timed + warm-up)"
            print(line, flush=True)
        finally:
            stop(proc)
    off, on = sum(runs["off"]) / 2, sum(runs["on"]) / 2
    ratio = on / off
    print(f"with the log: {ratio:.1%} of the throughput without it (target >= 90%)")
    results["serving"] = {"off_rps": off, "on_rps": on, "ratio": ratio}

    # 2. Label ingest: bulk against one request per label.
    url, proc = serve(model, tmp / "log-ingest", tmp, "ingest")
    try:
        ids = []
        with httpx.Client(timeout=60) as http:
            for _ in range(args.labels // 1000):
                answer = http.post(f"{url}/predict", json={"data": [ROW] * 1000}).json()
                ids.append(answer["request_id"])
        labels = tmp / "labels.csv"
        with labels.open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["request_id", "index", "truth"])
            for rid in ids:
                out.writerows((rid, i, i % 3) for i in range(1000))
        from backends.lifecycle.feedback import push_labels, read_labels

        totals = push_labels(url, read_labels(labels))
        bulk = totals.sent / totals.seconds
        assert totals.taken == totals.sent, totals
        print(
            f"bulk (mlops feedback push): {totals.sent} labels in {totals.seconds:.2f}s "
            f"= {bulk:,.0f} labels/s (target >= 10,000/s)"
        )
        peer_n = 2000
        with httpx.Client(timeout=60) as http:
            started = time.perf_counter()
            for i in range(peer_n):
                http.post(
                    f"{url}/feedback", json={"request_id": ids[0], "index": i % 1000, "truth": 1}
                )
            peer = peer_n / (time.perf_counter() - started)
        print(f"one POST per label (peer): {peer:,.0f} labels/s → bulk is {bulk / peer:.1f}x")
        results["ingest"] = {"bulk_per_s": bulk, "per_label_per_s": peer, "ratio": bulk / peer}
    finally:
        stop(proc)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
