"""A scikit-learn model directory that MLflow saved, loaded without importing MLflow.

Importing ``mlflow.pyfunc`` costs a model server about a second of CPU before it reads a byte of
the model, on every container start (and every replica a rolling update starts). For the plain
case — MLflow's ``sklearn`` flavor with a pickle, cloudpickle or skops file, no code paths, a
column signature of scalar types or none — this module does what ``mlflow.pyfunc.load_model``
and its ``predict`` do for it: read ``MLmodel``, deserialize the estimator as
``mlflow.sklearn._load_model_from_local_file`` does (skops with the ``skops_trusted_types`` the
flavor lists), and call the ``predict_fn`` the model was logged with on the frame. Column
checks and dtypes are the server's own (``server.schema.conform`` and ``LoadedModel``), as they
are before MLflow's enforcement on the other path.

Anything else (another flavor, a custom ``predict_fn``, code paths, tensor or nested
signatures, a type-hint signature, ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``) returns None
and is loaded by MLflow, which also gives its own errors for what it refuses.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.schema import PANDAS_DTYPES, ColumnSpec, InputSchema

__all__ = ["PlainSklearn", "load_plain"]

# MLflow's _SklearnModelWrapper exposes these besides predict (pyfunc_predict_fn=...).
PREDICT_FNS = ("predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba", "score")
FORMATS = ("pickle", "cloudpickle", "skops")
# What the python_function flavor of a plain scikit-learn model says; a truthy other key (code,
# data, model_config, streamable, ...) changes how MLflow loads it.
PYFUNC_KEYS = ("loader_module", "model_path", "predict_fn", "env", "python_version")
# The column types the server checks and converts itself (server.schema's PANDAS_DTYPES); a
# signature with others (binary, datetime, arrays, objects) is MLflow's to enforce.
SCALAR_TYPES = tuple(PANDAS_DTYPES)


@dataclass(frozen=True)
class PlainMetadata:
    flavors: dict[str, Any]
    run_id: str


@dataclass
class PlainSklearn:
    """The parts of a loaded pyfunc model the server uses, for a plain scikit-learn model."""

    raw: Any
    predict_fn: str
    run_id: str
    flavors: dict[str, Any]
    schema: InputSchema | None
    output_type: str | None  # the output signature's one column type, when it has one

    @property
    def metadata(self) -> PlainMetadata:
        """What server.fastpath reads of a pyfunc model's metadata."""
        return PlainMetadata(self.flavors, self.run_id)

    def predict(self, frame: Any) -> Any:
        return getattr(self.raw, self.predict_fn)(frame)

    def get_raw_model(self) -> Any:
        return self.raw


def load_plain(directory: Path) -> PlainSklearn | None:
    """The model in ``directory`` when it is the plain case above, else None (use MLflow)."""
    # MLflow's own reading of the variable (true/1, any case; unset is true in 3.17, which
    # tests/server/test_sklearn_dir.py holds it to); anything else is MLflow's to refuse.
    if os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true").lower() not in ("true", "1"):
        return None
    meta = _read_mlmodel(directory / "MLmodel")
    if meta is None or _is_external(meta):
        return None
    flavors = meta.get("flavors")
    if not isinstance(flavors, dict):
        return None
    pyfunc = flavors.get("python_function")
    sklearn = flavors.get("sklearn")
    if not isinstance(pyfunc, dict) or not isinstance(sklearn, dict):
        return None
    if pyfunc.get("loader_module") != "mlflow.sklearn" or sklearn.get("code"):
        return None
    if any(value for key, value in pyfunc.items() if key not in PYFUNC_KEYS):
        return None  # code paths, a data file, a model config, streaming: MLflow's to read
    predict_fn = pyfunc.get("predict_fn") or "predict"
    file_format = sklearn.get("serialization_format") or "pickle"
    model_path = pyfunc.get("model_path")
    if predict_fn not in PREDICT_FNS or file_format not in FORMATS or not model_path:
        return None
    if meta.get("is_signature_from_type_hint") or meta.get("type_hint_from_example"):
        return None
    signature = meta.get("signature") or {}
    if not isinstance(signature, dict) or signature.get("params"):
        return None
    if any(key not in ("inputs", "outputs", "params") for key in signature):
        return None  # a signature MLflow may read otherwise (or refuse)
    try:
        inputs = _columns(signature.get("inputs"))
    except _NotPlain:
        return None
    path = (directory / str(model_path)).resolve()
    if not path.is_file() or directory.resolve() not in path.parents:
        return None
    try:
        raw = _deserialize(path, file_format, sklearn.get("skops_trusted_types"))
    except Exception:
        return None  # MLflow tries again, and its error is the one the operator sees
    if not hasattr(raw, predict_fn):
        return None  # MLflow says "missing required ... method"
    return PlainSklearn(
        raw=raw,
        predict_fn=predict_fn,
        run_id=str(meta.get("run_id") or ""),
        flavors=flavors,
        schema=inputs,
        output_type=_output_type(signature.get("outputs")),
    )


def _is_external(meta: dict[str, Any]) -> bool:
    """A model MLflow registered from outside (``mlflow.model.isExternal``): it refuses to load."""
    extra = meta.get("metadata")
    return isinstance(extra, dict) and bool(extra.get("mlflow.model.isExternal"))


def _read_mlmodel(path: Path) -> dict[str, Any] | None:
    try:
        import yaml

        meta = yaml.safe_load(path.read_text())
    except Exception:
        return None
    return meta if isinstance(meta, dict) else None


class _NotPlain(Exception):
    """A signature this module does not read: MLflow loads the model."""


def _columns(text: Any) -> InputSchema | None:
    """The input signature as our schema, None when there is none; _NotPlain for one this
    module does not handle (tensors, unnamed columns, nested types)."""
    if text is None:
        return None
    try:
        specs = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        raise _NotPlain from None
    if not isinstance(specs, list) or not specs:
        raise _NotPlain
    columns = []
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _NotPlain
        kind = spec.get("type")
        if kind not in SCALAR_TYPES:
            raise _NotPlain
        columns.append(ColumnSpec(spec["name"], kind, bool(spec.get("required", True))))
    return InputSchema(tuple(columns))


def _output_type(text: Any) -> str | None:
    """The output signature's one column type, or its one tensor's dtype (as MLflow's schema
    names them), else None."""
    try:
        specs = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if not (isinstance(specs, list) and len(specs) == 1 and isinstance(specs[0], dict)):
        return None
    kind = specs[0].get("type")
    if kind == "tensor":
        tensor = specs[0].get("tensor-spec")
        kind = tensor.get("dtype") if isinstance(tensor, dict) else None
    return kind if isinstance(kind, str) else None


def _deserialize(path: Path, file_format: str, trusted: Any) -> Any:
    if file_format == "skops":
        import skops.io

        return skops.io.load(str(path), trusted=trusted)
    with path.open("rb") as f:
        if file_format == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(f)
        return pickle.load(f)
