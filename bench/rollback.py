"""Deploy v1, hold a steady load, switch to v2 and roll back to v1: count failed requests.

Uses the real Docker engine (images built from the local base image, as in CI) and a throwaway
sqlite tracking store. Prints the failed-request count (target 0), how long each switch took,
and checks that every request sent after a switch returned was answered by the new version.
The peer: the same two switches done the naive way (stop the old container, start the new one
on the same port), measured in the same run.

Usage: python bench/rollback.py [--clients 8] [--seconds-between 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass
class Load:
    url: str
    clients: int
    results: list[tuple[float, float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            await asyncio.gather(*(self._client(http) for _ in range(self.clients)))

    async def _client(self, http: httpx.AsyncClient) -> None:
        body = {"data": [[5.1, 3.5, 1.4, 0.2]]}
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                r = await http.post(self.url + "/predict", json=body)
                version = (
                    r.json().get("model", {}).get("version", "") if r.status_code == 200 else ""
                )
                status = r.status_code
            except httpx.HTTPError:
                status, version = 0, ""
            self.results.append((sent, time.monotonic(), status, version))
            await asyncio.sleep(0.002)

    def failures(self) -> int:
        return sum(1 for r in self.results if r[2] != 200)

    def stale_after(self, switched_at: float, until: float, version: str) -> int:
        return sum(
            1
            for s, _, st, v in self.results
            if switched_at < s < until and st == 200 and v != version
        )


def train_versions(tracking_uri: str) -> str:
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    mlflow.set_tracking_uri(tracking_uri)
    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    x, y = frame[FEATURES], frame["target"]
    name = "iris-rollback-bench"
    for seed in (1, 2):
        clf = RandomForestClassifier(n_estimators=20, random_state=seed).fit(x, y)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                clf,
                name="model",
                signature=infer_signature(x, clf.predict(x)),
                skops_trusted_types=["sklearn.tree._tree.Tree"],
            )
        mlflow.register_model(info.model_uri, name)
    return name


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds-between", type=float, default=3.0)
    args = parser.parse_args()
    from backends.docker import containers, switch
    from backends.docker import engine as docker_engine
    from backends.lifecycle.build import build
    from backends.lifecycle.handles import Handles

    tmp = Path(tempfile.mkdtemp(prefix="bench-rollback-"))
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    name = train_versions(tracking)
    client = docker_engine.connect()
    handles = Handles(tracking, docker=client)
    built = {v: build(handles, f"{name}/{v}").image for v in ("1", "2")}
    port = switch.free_port()
    deployment = f"bench-{os.getpid()}"
    switch.deploy(client, built["1"], deployment, port=port)
    load = Load(f"http://127.0.0.1:{port}", args.clients)
    worker = threading.Thread(target=load.run)
    worker.start()
    switches = []
    try:
        for target in ("2", "1"):
            time.sleep(args.seconds_between)
            start = time.monotonic()
            switch.deploy(client, built[target], deployment, port=port)
            done = time.monotonic()
            switches.append((target, start, done))
        time.sleep(args.seconds_between)
    finally:
        load.stop.set()
        worker.join()
        containers.remove_deployment(client, deployment)

    stale = 0
    for i, (target, _, done) in enumerate(switches):
        until = switches[i + 1][1] if i + 1 < len(switches) else float("inf")
        stale += load.stale_after(done, until, target)
    ours_failed = load.failures()
    print(
        f"requests {len(load.results)}, failed {ours_failed}, answered by the old version "
        f"after a switch returned {stale}"
    )
    for target, start, done in switches:
        print(
            f"switch to v{target}: {done - start:.2f} s (new container started, ready, "
            "traffic moved, old drained)"
        )

    # The peer: stop-then-start on the same port, with the same load.
    naive_failed, naive_total = naive_switch(client, built, args)
    print(
        f"peer (stop old, start new on the same port): requests {naive_total}, "
        f"failed {naive_failed}"
    )
    print("target (0 failed, 0 stale):", "MET" if ours_failed == 0 and stale == 0 else "NOT MET")
    slowest = max(done - start for _, start, done in switches)
    print(  # reported, as serve.py reports 23.1: the exit status is the 0-failed contract's
        f"issue 23.5, every switch <= 3 s end to end: {'met' if slowest <= 3 else 'NOT met'} "
        f"(the slowest {slowest:.2f} s)"
    )
    return 0 if ours_failed == 0 and stale == 0 else 1


def naive_switch(
    client: object, built: dict[str, object], args: argparse.Namespace
) -> tuple[int, int]:
    from backends.docker import containers, switch

    port = switch.free_port()

    def run(v: str) -> object:
        image = built[v]
        c = client.containers.run(  # type: ignore[attr-defined]
            image.tags[0],
            detach=True,
            network_mode="host",  # type: ignore[attr-defined]
            environment={"MLOPS_PORT": str(port)},
            name=f"bench-naive-{os.getpid()}-{v}",
        )
        switch._wait_ready(c, f"http://127.0.0.1:{port}", 120)
        return c

    current = run("1")
    load = Load(f"http://127.0.0.1:{port}", args.clients)
    worker = threading.Thread(target=load.run)
    worker.start()
    try:
        for target in ("2", "1"):
            time.sleep(args.seconds_between)
            containers.remove_container(current)
            current = run(target)
        time.sleep(args.seconds_between)
    finally:
        load.stop.set()
        worker.join()
        containers.remove_container(current)
    return load.failures(), len(load.results)


if __name__ == "__main__":
    raise SystemExit(main())
