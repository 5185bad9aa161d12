"""Register small real models in a real tracking server, for the integration tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.server.conftest import FEATURES, example_train_module, iris_frame


def log_version(
    experiment_id: str,
    name: str,
    seed: int,
    with_reference: bool,
    tmp: Path,
    git: tuple[str, str] | None = None,
) -> tuple[str, str]:
    """Train a small iris forest, log it (and optionally its drift reference), register it.
    ``git`` (repository URL, commit) is recorded as MLflow records a run started from a checkout.

    Returns (version, run id). The active tracking URI must point at the server.
    """
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    frame = iris_frame()
    x, y = frame[FEATURES], frame["target"]
    clf = RandomForestClassifier(n_estimators=10 + seed, random_state=seed, max_depth=2).fit(x, y)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        if git is not None:
            mlflow.set_tags(
                {"mlflow.source.git.repoURL": git[0], "mlflow.source.git.commit": git[1]}
            )
        info = mlflow.sklearn.log_model(
            clf,
            name="model",
            signature=infer_signature(x, clf.predict(x)),
            input_example=x.head(3),
            skops_trusted_types=["sklearn.tree._tree.Tree"],
            pip_requirements=pip_requirements(),
        )
        if with_reference:
            ref = tmp / f"ref-{name}-{seed}" / "drift_reference.json"
            ref.parent.mkdir(parents=True)
            ref.write_text(json.dumps(example_train_module().drift_reference(x, 500, seed)))
            mlflow.log_artifact(str(ref))
    version = mlflow.register_model(info.model_uri, name).version
    return str(version), run.info.run_id


def pip_requirements() -> list[str]:
    """The model's requirements, named: MLflow's inference loads each model again in a child
    process (about 5 s a model, a minute of a registry fixture) to find the same pins."""
    import mlflow.sklearn

    return list(mlflow.sklearn.get_default_pip_requirements(include_skops=True))


def pyfunc_predictions(model_uri: str, rows: list[list[float]]) -> list[Any]:
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(model_uri)
    return list(model.predict(pd.DataFrame(rows, columns=FEATURES)).tolist())


def training_inputs(run: Any) -> list[Any]:
    """A run's dataset inputs of context ``training`` (the example projects also log their
    held-out split, as context ``evaluation``)."""
    return [
        i
        for i in run.inputs.dataset_inputs
        if any(t.key == "mlflow.data.context" and t.value == "training" for t in i.tags)
    ]
