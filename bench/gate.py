"""The gate policy's evaluation against fairlearn's MetricFrame on the same rows.

100,000 evaluation rows of a 3-class problem, 24 slices (a group column of 4, a binned
numeric column of 4, and their cross of 16), accuracy and macro F1 per slice, 200 bootstrap
resamples with 95 % intervals, plus the fairness difference and ratio between the groups.

The peer computes the same figures with ``MetricFrame(..., n_boot=N)`` per slicing. Its
bootstrap recomputes every metric per resample (about 3 s a resample here), so by default it
runs 20 resamples and its time is scaled to 200 (``--peer-resamples 200`` measures all of
them: about ten minutes). The point figures must agree to float tolerance (the bench fails
otherwise); the intervals come from different random resamples, so they are compared by their
largest gap, which should be a fraction of the intervals' width.

fairlearn is not a dependency of the console: the bench installs it (``--no-deps``, with
narwhals) into ``~/.cache/mlops-console/bench-peers`` on first use.

    python bench/gate.py [--rows 100000] [--resamples 200]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEERS = Path.home() / ".cache" / "mlops-console" / "bench-peers"
FAIRLEARN = ["fairlearn==0.15.0", "narwhals==2.29.0"]


def fairlearn() -> None:
    if not (PEERS / "fairlearn").is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
                str(PEERS),
                *FAIRLEARN,
            ],
            check=True,
        )
    sys.path.insert(0, str(PEERS))


def data(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, rows)
    group = rng.choice(np.array(["a", "b", "c", "d"], dtype=object), rows)
    size = rng.normal(size=rows)
    predicted = np.where(rng.random(rows) < 0.88, truth, rng.integers(0, 3, rows))
    worse = (group == "d") & (rng.random(rows) < 0.2)
    predicted[worse] = (truth[worse] + 1) % 3
    return {"truth": truth, "predicted": predicted, "group": group, "size": size}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--resamples", type=int, default=200)
    p.add_argument("--peer-resamples", type=int, default=20)
    args = p.parse_args()
    fairlearn()
    import pandas as pd
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score, f1_score

    from backends.policy import EvaluationData, evaluate, parse_policy

    d = data(args.rows)
    policy = parse_policy(
        {
            "metrics": {"accuracy": 0.5, "f1": 0.5},
            "slices": {
                "min_size": 30,
                "by": ["group", {"column": "size", "bins": 4}, ["group", "size"]],
                "floor": {"accuracy": 0.5, "f1": 0.5},
            },
            "fairness": [{"column": "group", "max_difference": 0.1, "min_ratio": 0.8}],
            "bootstrap": {"resamples": args.resamples, "confidence": 0.95, "seed": 1},
        },
        "bench",
    )
    evaluation = EvaluationData(
        {"group": d["group"], "size": d["size"]}, d["truth"], d["predicted"]
    )
    evaluate(policy, evaluation)  # warm: imports, first-call costs
    start = time.perf_counter()
    report = evaluate(policy, evaluation)
    ours = time.perf_counter() - start
    slices = [c for c in report.checks if c.kind == "slice" and c.metric == "accuracy"]

    # The peer: the same slicings as sensitive features, the same metrics and resamples.
    edges = np.unique(np.quantile(d["size"], [0.25, 0.5, 0.75]))
    size_bin = np.searchsorted(edges, d["size"], side="right")
    metrics = {
        "accuracy": accuracy_score,
        "f1": lambda a, b: f1_score(a, b, average="macro"),
    }
    slicings = {
        "group": pd.DataFrame({"group": d["group"]}),
        "size": pd.DataFrame({"size": size_bin}),
        "cross": pd.DataFrame({"group": d["group"], "size": size_bin}),
    }
    start = time.perf_counter()
    frames = {
        name: MetricFrame(
            metrics=metrics,
            y_true=d["truth"],
            y_pred=d["predicted"],
            sensitive_features=features,
            n_boot=args.peer_resamples,
            ci_quantiles=[0.025, 0.975],
            random_state=1,
        )
        for name, features in slicings.items()
    }
    peer = (time.perf_counter() - start) * args.resamples / args.peer_resamples
    scaled = (
        ""
        if args.peer_resamples == args.resamples
        else f" (measured {args.peer_resamples}, scaled)"
    )

    # Same figures: every slice's accuracy and F1, and the fairness difference and ratio.
    theirs: list[float] = []
    for frame in frames.values():
        theirs += frame.by_group["accuracy"].tolist() + frame.by_group["f1"].tolist()
    ours_values = [c.value for c in report.checks if c.kind == "slice"]
    assert len(ours_values) == len(theirs), (len(ours_values), len(theirs))
    point_gap = max(abs(a - b) for a, b in zip(sorted(ours_values), sorted(theirs), strict=True))
    group = frames["group"]
    spread = next(c for c in report.checks if "difference" in c.name)
    ratio = next(c for c in report.checks if "ratio" in c.name)
    fair_gap = max(
        abs(spread.value - group.difference()["accuracy"]),
        abs(ratio.value - group.ratio()["accuracy"]),
    )
    assert point_gap < 1e-9 and fair_gap < 1e-9, (point_gap, fair_gap)
    low, high = group.difference_ci()
    interval_gap = max(abs(spread.low - low["accuracy"]), abs(spread.high - high["accuracy"]))
    width = spread.high - spread.low

    print(
        f"{args.rows:,} rows, {len(slices)} slices judged, {args.resamples} resamples, "
        f"{len(report.checks)} checks"
    )
    print(f"ours (backends.policy.evaluate): {ours:.2f} s")
    print(f"fairlearn MetricFrame, n_boot={args.resamples}: {peer:.2f} s{scaled}")
    print(f"ratio: {peer / ours:.1f}x faster (target: ours <= 2 s)")
    print(
        f"same figures: largest gap {max(point_gap, fair_gap):.1e} over {len(theirs)} slice "
        f"figures and the difference/ratio; interval bounds differ by at most {interval_gap:.4f} "
        f"(the interval is {width:.4f} wide: different random resamples)"
    )


if __name__ == "__main__":
    main()
