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


RULE_MODEL = '''
"""A hand-written iris rule, served as an MLflow model from code: {behaviour}."""
import os
import time

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

BEHAVIOUR = {behaviour!r}


class Rule(PythonModel):
    def load_context(self, context):
        # Only where it is served (the image sets MLOPS_MODEL_URI): it logs and registers.
        if BEHAVIOUR == "broken" and os.environ.get("MLOPS_MODEL_URI"):
            raise RuntimeError("this version cannot load where it is served")

    def predict(self, context, model_input, params=None):
        if BEHAVIOUR == "fails" and (model_input["petal_length"] > 4.0).any():
            raise RuntimeError("this canary fails on long petals")  # a bug: a 500
        if BEHAVIOUR == "slow":
            time.sleep(1.0)
        length, width = model_input["petal_length"], model_input["petal_width"]
        labels = np.where(length < 2.5, 0, np.where(width < 1.75, 1, 2))
        if BEHAVIOUR == "differs":
            labels = np.where(length < 2.5, 1, labels)  # every setosa is called versicolor
        return labels


mlflow.models.set_model(Rule())
'''


def log_rule_version(experiment_id: str, name: str, behaviour: str, tmp: Path) -> tuple[str, str]:
    """Register a version of ``name`` that is a fixed iris rule, ``behaviour`` one of ``plain``,
        ``fails`` (a model error on any row with petal_length > 4), ``slow`` (1 s a call) and
        ``differs`` (setosa answered as versicolor) and ``broken`` (fails to load where it is
    served): a canary whose faults are known. Logged as a
        model from code, so the serving image needs nothing of the tests to load it."""
    import mlflow
    from mlflow.models import infer_signature

    frame = iris_frame()[FEATURES]
    source = tmp / f"rule-{behaviour}.py"
    source.write_text(RULE_MODEL.format(behaviour=behaviour))
    with mlflow.start_run(experiment_id=experiment_id) as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(source),
            signature=infer_signature(frame, [0] * len(frame)),
            input_example=frame.head(3),
            pip_requirements=pip_requirements(),
        )
    version = mlflow.register_model(info.model_uri, name).version
    return str(version), run.info.run_id
