"""Train a repayment classifier on the loan book and log what the promotion gate needs.

The model sees income, debt ratio and years in employment, never the group: the group is
kept in the held-out split (``evaluation/held_out.csv``, logged with its digest as an input
of context ``evaluation``) so that the gate can judge the model per group (gate.yaml).

The default model (``-P model=linear``, a logistic regression) learns the majority's rule and
is unfair to group B, which the gate catches; ``-P model=tree`` (a decision tree of
``max_depth``) tells B's rows apart by their years in work, learns both rules and passes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

FEATURES = ["income", "debt_ratio", "years_employed"]
GROUP = "group"
TARGET = "repaid"
HELD_OUT_ARTIFACT = "evaluation/held_out.csv"
# skops refuses unknown types on load; a tree holds this one.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
DATA = Path(__file__).resolve().parent / "data" / "loans.csv"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", choices=["linear", "tree"], default="linear")
    p.add_argument("--max-depth", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-size", type=float, default=0.3)
    p.add_argument("--data", default=str(DATA))
    args = p.parse_args(argv)
    if args.max_depth < 1:
        p.error("--max-depth must be at least 1")
    if not 0.0 < args.test_size < 1.0:
        p.error("--test-size must be between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    frame = pd.read_csv(args.data)
    train, test = train_test_split(
        frame, test_size=args.test_size, random_state=args.seed, stratify=frame[GROUP]
    )
    # The held-out file is read back with a fresh index: log what will be read.
    test = test.reset_index(drop=True)
    if mlflow.active_run() is None and "MLFLOW_RUN_ID" not in os.environ:
        mlflow.set_experiment("loans")
    with mlflow.start_run() as run:
        logged = mlflow.get_run(run.info.run_id).data.params
        params = {
            "model": args.model,
            "max_depth": args.max_depth,
            "seed": args.seed,
            "test_size": args.test_size,
        }
        mlflow.log_params({k: v for k, v in params.items() if k not in logged})
        mlflow.log_input(
            mlflow.data.from_pandas(train, name="loans-train", targets=TARGET), context="training"
        )
        model = (
            DecisionTreeClassifier(max_depth=args.max_depth, random_state=args.seed)
            if args.model == "tree"
            else make_pipeline(StandardScaler(), LogisticRegression())
        )
        model.fit(train[FEATURES], train[TARGET])
        predicted = model.predict(test[FEATURES])
        accuracy = float(accuracy_score(test[TARGET], predicted))
        mlflow.log_metrics(
            {"accuracy": accuracy, "f1": float(f1_score(test[TARGET], predicted, average="macro"))}
        )
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(train[FEATURES], model.predict(train[FEATURES])),
            input_example=train[FEATURES].head(5),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(HELD_OUT_ARTIFACT).name
            test.to_csv(path, index=False)
            mlflow.log_artifact(str(path), artifact_path=str(Path(HELD_OUT_ARTIFACT).parent))
        mlflow.log_input(
            mlflow.data.from_pandas(test, name="loans-held-out", targets=TARGET),
            context="evaluation",
        )
        print(f"run_id={run.info.run_id} accuracy={accuracy:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
