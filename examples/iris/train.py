"""Train the iris RandomForest and log everything a promotion or a drift monitor needs.

Logs: params, accuracy and macro F1, the rows it was fitted on as an MLflow dataset input (with
its digest), the held-out split as a second input (context ``evaluation``) and as the artifact
``evaluation/held_out.csv`` (what the promotion gate judges the model on: see gate.yaml), the
git commit, the model with signature and input example, and ``drift_reference.json`` beside
the model (the format is in DESIGN.md and below).

Same parameters + same data give the same metrics: every source of randomness takes ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
TARGET = "target"
BUNDLED = "bundled:iris"  # scikit-learn's copy of the iris data set
DRIFT_BINS = 10
DRIFT_REFERENCE_FORMAT = "mlops-drift-reference/1"
HELD_OUT_ARTIFACT = "evaluation/held_out.csv"  # where the promotion gate looks for it
# skops refuses unknown types on load; these are the ones a RandomForestClassifier contains.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n-estimators", type=int, default=100)
    p.add_argument("--max-depth", type=int, default=0, help="0 means no limit")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--data", default=BUNDLED, help="CSV with the feature columns and 'target'")
    p.add_argument("--reference-sample", type=int, default=500)
    args = p.parse_args(argv)
    if args.n_estimators < 1:
        p.error("--n-estimators must be at least 1")
    if not 0.0 < args.test_size < 1.0:
        p.error("--test-size must be between 0 and 1")
    return args


def load_data(path: str) -> tuple[pd.DataFrame, str]:
    """Return the frame (features + target) and where it came from."""
    if path in ("", BUNDLED):
        from sklearn.datasets import load_iris

        bunch = load_iris(as_frame=True)
        frame = bunch.frame.copy()
        frame.columns = [*FEATURES, TARGET]
        return frame, "sklearn.datasets.load_iris"
    csv = Path(path)
    if not csv.is_file():
        sys.exit(f"error: data file not found: {csv}")
    frame = pd.read_csv(csv)
    missing = [c for c in [*FEATURES, TARGET] if c not in frame.columns]
    if missing:
        sys.exit(f"error: {csv} lacks the columns {', '.join(missing)}")
    return frame[[*FEATURES, TARGET]], str(csv.resolve())


def drift_reference(train: pd.DataFrame, sample_size: int, seed: int) -> dict[str, object]:
    """Per-feature quantile bin edges with expected proportions (PSI) and a bounded sample (KS)."""
    rng = np.random.default_rng(seed)
    features: dict[str, object] = {}
    for name in FEATURES:
        values = train[name].to_numpy(dtype=float)
        # Interior quantile edges; duplicates collapse (a discrete feature has fewer bins).
        edges = np.unique(np.quantile(values, np.linspace(0, 1, DRIFT_BINS + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
        sample = values if len(values) <= sample_size else rng.choice(values, sample_size, False)
        features[name] = {
            "edges": edges.tolist(),
            "expected": (counts / counts.sum()).tolist(),
            "sample": np.sort(sample).tolist(),
        }
    return {
        "format": DRIFT_REFERENCE_FORMAT,
        "rows": len(train),
        "features": features,
        "thresholds": {"psi": 0.2, "ks_pvalue": 0.05},
    }


def git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    frame, source = load_data(args.data)
    x, y = frame[FEATURES], frame[TARGET]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=args.test_size, random_state=args.seed, stratify=y
    )

    if (
        os.environ.get("MLFLOW_EXPERIMENT_NAME") is None
        and mlflow.active_run() is None
        and os.environ.get("MLFLOW_RUN_ID") is None
    ):
        mlflow.set_experiment("iris")

    with mlflow.start_run() as run:
        params = {
            "n_estimators": args.n_estimators,
            "max_depth": args.max_depth,
            "seed": args.seed,
            "test_size": args.test_size,
            "data": args.data or BUNDLED,
        }
        # `mlflow run` has logged the entry point's parameters already (and params are
        # write-once); log only what a direct `python train.py` run is missing.
        logged = mlflow.get_run(run.info.run_id).data.params
        mlflow.log_params({k: v for k, v in params.items() if k not in logged})
        # The bundled set has no file behind it; a source string would be misread as a path.
        source_kw = {"source": source} if args.data not in ("", BUNDLED) else {}
        # The rows the model is fitted on, not the whole file: the gate refuses to judge a
        # version on its training input, so the input must be exactly what it learned from.
        fitted = x_train.assign(**{TARGET: y_train}).reset_index(drop=True)
        dataset = mlflow.data.from_pandas(fitted, name="iris", targets=TARGET, **source_kw)
        mlflow.log_input(dataset, context="training")
        commit = git_commit(Path(__file__).resolve().parent)
        if commit and "mlflow.source.git.commit" not in run.data.tags:
            mlflow.set_tag("mlflow.source.git.commit", commit)

        clf = RandomForestClassifier(
            n_estimators=args.n_estimators,
            max_depth=args.max_depth or None,
            random_state=args.seed,
            n_jobs=1,  # deterministic and polite on a shared 2-core box
        )
        clf.fit(x_train, y_train)
        predictions = clf.predict(x_test)
        accuracy = float(accuracy_score(y_test, predictions))
        f1 = float(f1_score(y_test, predictions, average="macro"))
        mlflow.log_metrics({"accuracy": accuracy, "f1": f1})

        signature = infer_signature(x_train, clf.predict(x_train))
        mlflow.sklearn.log_model(
            clf,
            name="model",
            signature=signature,
            input_example=x_train.head(5),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            # Named, not inferred: inference loads the model again in a child process (about
            # 5 s of every training) and lists whatever the trainer's environment happened to
            # import (pytest, rich); MLflow adds its own pin to these.
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
        with tempfile.TemporaryDirectory() as tmp:
            ref_path = Path(tmp) / "drift_reference.json"
            reference = drift_reference(x_train, args.reference_sample, args.seed)
            ref_path.write_text(json.dumps(reference))
            mlflow.log_artifact(str(ref_path))
            # The rows the model never saw, for the promotion gate: the file, and an input
            # whose digest the gate checks the file against.
            held_out = x_test.assign(**{TARGET: y_test}).reset_index(drop=True)
            held_path = Path(tmp) / Path(HELD_OUT_ARTIFACT).name
            held_out.to_csv(held_path, index=False)
            mlflow.log_artifact(str(held_path), artifact_path=str(Path(HELD_OUT_ARTIFACT).parent))
            mlflow.log_input(
                mlflow.data.from_pandas(held_out, name="iris-held-out", targets=TARGET),
                context="evaluation",
            )

        print(f"run_id={run.info.run_id} accuracy={accuracy:.4f} f1={f1:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
