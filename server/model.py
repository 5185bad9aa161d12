"""Load an MLflow model by reference or directory, and predict on rows.

This is the only server module that imports mlflow, and only for what server.sklearn_dir does
not load without it. References: ``name@alias``,
``name/version``, ``models:/...``, ``runs:/...``, or a directory with an ``MLmodel`` file (the
image bakes one in, with ``mlops-model.json`` saying which version it is).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.drift import DriftMonitor, DriftReference
from server.fastpath import ForestPredictor, NotFast, forest_predictor
from server.schema import PANDAS_DTYPES, ColumnSpec, InputSchema
from server.sklearn_dir import load_plain

log = logging.getLogger("server.model")

BAKED_METADATA = "mlops-model.json"
DRIFT_REFERENCE = "drift_reference.json"


@dataclass(frozen=True)
class ModelIdentity:
    """What is being served: enough to answer /version and label metrics."""

    name: str
    version: str
    run_id: str
    alias: str
    source: str  # the URI actually loaded (pinned to a version when resolved from an alias)


@dataclass(frozen=True)
class ResolvedReference:
    identity: ModelIdentity
    load_uri: str
    directory: Path | None = None
    validation: dict[str, float] = field(default_factory=dict)  # the run's held-out metrics


@dataclass
class LoadedModel:
    identity: ModelIdentity
    schema: InputSchema | None
    pyfunc: Any
    drift: DriftMonitor | None
    drift_status: str
    fast: ForestPredictor | None = None
    loaded_at: float = field(default_factory=time.time)
    task: str | None = None  # "classifier", "regressor", or None when the model says neither
    classes: list[Any] | None = None  # a classifier's classes, when it lists them
    validation: dict[str, float] = field(default_factory=dict)  # the run's held-out metrics

    def __post_init__(self) -> None:
        # Every column of the schema a double: the frame is one float64 array (see frame).
        kinds = {c.type for c in self.schema.columns} if self.schema is not None else set()
        self._all_double = kinds == {"double"}
        self._names = self.schema.names if self.schema is not None else None
        # Otherwise each column is cast to its type: the casts, worked out once.
        self._dtypes = {
            c.name: PANDAS_DTYPES[c.type]
            for c in (self.schema.columns if self.schema is not None else ())
            if c.type in PANDAS_DTYPES and c.type != "string"
        }

    def predict(self, columns: list[str] | None, rows: list[list[Any]]) -> list[Any]:
        """Predict a batch of rows; one JSON-able prediction per row."""
        return self.predict_scored(columns, rows)[0]

    def predict_scored(
        self, columns: list[str] | None, rows: list[list[Any]]
    ) -> tuple[list[Any], list[list[float]] | None]:
        """Predictions, and a classifier's class probabilities (in ``classes`` order) when
        they come with them at no cost (the forests' fast path); None otherwise."""
        if self.fast is not None:
            try:
                out, proba = self.fast.scored(rows)
            except NotFast:
                pass
            else:
                if self.drift is not None:
                    self.drift.observe(rows)
                return list(out), proba
        result = self.pyfunc.predict(self.frame(columns, rows))
        if self.drift is not None:
            self.drift.observe(rows)
        return to_rows(result), None

    def frame(self, columns: list[str] | None, rows: list[list[Any]]) -> Any:
        """The rows as the pandas frame the model is given, each column of its schema's type.
        When every column is a double (most tabular models' signatures), one float64 array,
        laid out by column as pandas lays out the frame it builds from rows, is the frame:
        the same values (the schema check lets only numbers into such columns, and None in
        optional ones, NaN either way) and the same layout — a model's arithmetic (a dot
        product by BLAS) can round differently on another layout — at a tenth of the cost
        (~40 to 90 µs instead of ~700 µs for a few rows), which was half of a small model's
        time on the general path. Other schemas (a 32-bit float column included, whose
        integers pandas casts in one rounding and float64 would in two) take the cast per
        column."""
        import pandas as pd

        if self.schema is None:
            return pd.DataFrame(rows, columns=columns)
        names = self._names
        if self._all_double and names is not None and columns == names:
            import numpy as np

            values = np.array(rows, dtype=np.float64, order="F")
            if values.ndim == 2 and values.shape[1] == len(names):
                return pd.DataFrame(values, columns=columns, copy=False)
        return pd.DataFrame(rows, columns=columns).astype(self._dtypes)

    def current_drift_status(self) -> str:
        """ "enabled", "unavailable: why", or "stale: ..." when inputs stopped coming."""
        if self.drift is not None and self.drift.stale:
            age = self.drift.seconds_since_input() or 0.0
            return f"stale: no inputs for {age:.0f}s; drift figures withdrawn until they return"
        return self.drift_status

    def describe(self) -> dict[str, Any]:
        i = self.identity
        return {
            "name": i.name,
            "version": i.version,
            "run_id": i.run_id,
            "alias": i.alias,
            "source": i.source,
            "signature": {"inputs": self.schema.describe() if self.schema else None},
            "drift": self.current_drift_status(),
            "fast_path": self.fast is not None,
            "loaded_at": self.loaded_at,
        }


def to_rows(out: Any) -> list[Any]:
    """pyfunc output → a list with one JSON value per row (as `mlflow models serve` gives)."""
    import numpy as np
    import pandas as pd

    if isinstance(out, pd.DataFrame):
        return list(out.to_dict(orient="records"))
    if isinstance(out, pd.Series):
        return list(out.tolist())
    if isinstance(out, np.ndarray):
        return list(out.tolist())
    return list(out)


def resolve(reference: str, alias_hint: str = "") -> ResolvedReference:
    """Turn a reference into a concrete, pinned URI plus the identity it names."""
    path = Path(reference)
    if path.is_dir():
        return _resolve_directory(path)
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    ref = reference.removeprefix("models:/")
    if reference.startswith("runs:/"):
        run_id = reference.split("/")[1]
        return ResolvedReference(ModelIdentity("", "", run_id, "", reference), reference)
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        mv = client.get_model_version_by_alias(name, alias)
        uri = f"models:/{name}/{mv.version}"
        return ResolvedReference(
            ModelIdentity(name, str(mv.version), mv.run_id or "", alias, uri), uri
        )
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        mv = client.get_model_version(name, version)
        uri = f"models:/{name}/{mv.version}"
        return ResolvedReference(
            ModelIdentity(name, str(mv.version), mv.run_id or "", alias_hint, uri), uri
        )
    # A bare logged-model id (models:/m-...) or a registered name with no version.
    if ref.startswith("m-"):
        return ResolvedReference(ModelIdentity("", "", "", "", reference), reference)
    raise ValueError(
        f"cannot resolve {reference!r}: use NAME@ALIAS, NAME/VERSION, models:/..., runs:/... "
        "or a model directory"
    )


def _resolve_directory(path: Path) -> ResolvedReference:
    if not (path / "MLmodel").is_file():
        raise ValueError(f"{path} is not an MLflow model directory (no MLmodel file)")
    meta: dict[str, Any] = {}
    if (path / BAKED_METADATA).is_file():
        meta = json.loads((path / BAKED_METADATA).read_text())
    identity = ModelIdentity(
        name=str(meta.get("name", "")),
        version=str(meta.get("version", "")),
        run_id=str(meta.get("run_id", "")),
        # A baked image is one version; the alias it is deployed through comes from outside.
        alias=str(meta.get("alias") or os.environ.get("MLOPS_MODEL_ALIAS", "")),
        source=str(meta.get("source", path)),
    )
    given = meta.get("validation")
    validation: dict[str, Any] = given if isinstance(given, dict) else {}
    figures = {str(k): float(v) for k, v in validation.items() if isinstance(v, int | float)}
    return ResolvedReference(identity, str(path), directory=path, validation=figures)


def load(resolved: ResolvedReference, drift_window: int = 1000) -> LoadedModel:
    """Load the model and, when the run logged one, its drift reference. A plain scikit-learn
    model directory (what our images bake) is read without importing MLflow
    (server.sklearn_dir); anything else through ``mlflow.pyfunc.load_model``."""
    plain = load_plain(resolved.directory) if resolved.directory is not None else None
    pyfunc: Any
    if plain is not None:
        pyfunc, schema, run_id = plain, plain.schema, plain.run_id
        output_type = plain.output_type
    else:
        import mlflow.pyfunc

        pyfunc = mlflow.pyfunc.load_model(resolved.load_uri)
        schema, run_id = _input_schema(pyfunc), pyfunc.metadata.run_id
        output_type = _output_type(pyfunc)
    log.info(
        "loaded %s %s", resolved.load_uri, "without MLflow" if plain is not None else "by MLflow"
    )
    identity = resolved.identity
    if not identity.run_id and run_id:
        identity = ModelIdentity(
            identity.name,
            identity.version,
            run_id,
            identity.alias,
            identity.source,
        )
    reference, status = _drift_reference(resolved, identity.run_id)
    drift = None
    if reference is not None and schema is not None:
        drift = DriftMonitor(reference, schema.names, window=drift_window)
        if not drift.features:
            drift, status = None, "unavailable: the reference shares no feature with the schema"
    elif reference is not None:
        status = "unavailable: the model has no input signature"
    fast = forest_predictor(pyfunc, schema.names if schema else None)
    if fast is None:
        import pandas  # noqa: F401  # the general path's frames: imported now, not on a request
    task, classes = target_of(pyfunc, output_type)
    return LoadedModel(
        identity,
        schema,
        pyfunc,
        drift,
        status,
        fast,
        task=task,
        classes=classes,
        validation=resolved.validation,
    )


def target_of(pyfunc: Any, output_type: str | None) -> tuple[str | None, list[Any] | None]:
    """What the model predicts — a classifier (with its classes when it lists them) or a
    regressor — from the estimator itself, else from the output signature's one column type;
    (None, None) when neither says (labels for it cannot be judged)."""
    try:
        raw = pyfunc.get_raw_model()
    except Exception:
        raw = None
    classes = getattr(raw, "classes_", None)
    if classes is not None:
        try:
            return "classifier", list(classes.tolist() if hasattr(classes, "tolist") else classes)
        except Exception:
            return "classifier", None
    if raw is not None:
        try:
            from sklearn.base import is_regressor

            if is_regressor(raw):
                return "regressor", None
        except Exception:
            pass
    if output_type in ("long", "integer", "string", "boolean"):
        return "classifier", None
    if output_type in ("double", "float"):
        return "regressor", None
    return None, None


def _output_type(pyfunc: Any) -> str | None:
    """The type of an MLflow model's one output column (a tensor's dtype), else None."""
    try:
        outputs = pyfunc.metadata.get_output_schema()
    except Exception:
        return None
    if outputs is None or len(outputs.inputs) != 1:
        return None
    kind = outputs.inputs[0].type
    return str(getattr(kind, "name", kind))


def _input_schema(pyfunc: Any) -> InputSchema | None:
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        return None
    columns = []
    for spec in schema.inputs:
        kind = getattr(spec.type, "name", str(spec.type))
        columns.append(ColumnSpec(spec.name, kind, bool(getattr(spec, "required", True))))
    return InputSchema(tuple(columns))


def _drift_reference(resolved: ResolvedReference, run_id: str) -> tuple[DriftReference | None, str]:
    try:
        if resolved.directory is not None:
            path = resolved.directory / DRIFT_REFERENCE
            if not path.is_file():
                return None, f"unavailable: no {DRIFT_REFERENCE} baked beside the model"
            return DriftReference.load(path), "enabled"
        if not run_id:
            return None, "unavailable: the model has no source run"
        import mlflow.artifacts

        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=DRIFT_REFERENCE)
        return DriftReference.load(Path(local)), "enabled"
    except Exception as exc:  # a missing or broken reference must not stop serving
        log.warning("drift disabled: %s", exc)
        return None, f"unavailable: no usable {DRIFT_REFERENCE} ({exc.__class__.__name__})"
