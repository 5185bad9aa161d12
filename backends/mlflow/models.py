"""Model versions as the rest of the system knows them: references, records, downloads.

A reference is ``NAME@ALIAS``, ``NAME/VERSION`` or a ``models:/`` URI; ``resolve`` pins it to
one registered version now. A version is identified by its tracking store and its run, not by
its number alone: two stores can both hold an "iris v2" (``store_id``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from backends.errors import InvalidInput, NotFound
from backends.mlflow.client import translate_errors, using_tracking_uri
from backends.records import ModelVersion

__all__ = [
    "DRIFT_REFERENCE",
    "IDENTITY_FILE",
    "download_model",
    "parse_reference",
    "resolve",
    "store_id",
    "version_record",
]

DRIFT_REFERENCE = "drift_reference.json"
IDENTITY_FILE = "mlops-model.json"  # what a baked model directory says it is


def parse_reference(reference: str) -> tuple[str, str | None, int | None]:
    """`NAME@ALIAS`, `NAME/VERSION` or `models:/...` → (name, alias, version)."""
    ref = reference.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if name and version.isdigit() and int(version) > 0:
            return name, None, int(version)
    raise InvalidInput(f"cannot read model reference {reference!r}: use NAME@ALIAS or NAME/VERSION")


def store_id(tracking_uri: str) -> str:
    """A short, stable name for the tracking store behind ``tracking_uri``.

    The same store reached by the same address gives the same id; a local sqlite store is named
    by its absolute path, so two working directories' ``mlflow.db`` never share one.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        canonical = f"{parsed.scheme}://{(parsed.hostname or '').lower()}:{parsed.port or ''}"
        canonical += parsed.path.rstrip("/")
    elif parsed.scheme.startswith("sqlite"):
        path = tracking_uri.split(":///", 1)[-1]
        canonical = "sqlite:" + (path if path.startswith("/") else os.path.abspath(path))
    elif parsed.scheme in ("", "file"):
        canonical = "file:" + os.path.abspath(parsed.path or tracking_uri)
    else:
        canonical = tracking_uri
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _ms(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def version_record(
    mv: Any, aliases: dict[str, Any], metrics: dict[str, float], store: str
) -> ModelVersion:
    """Our record of an MLflow ``ModelVersion`` (``aliases``: the model's alias → version)."""
    version = int(mv.version)
    held = sorted(a for a, v in aliases.items() if int(v) == version) or list(mv.aliases or [])
    stage = mv.current_stage if mv.current_stage not in (None, "", "None") else None
    return ModelVersion(
        name=mv.name,
        version=version,
        run_id=mv.run_id or None,
        metrics=metrics,
        aliases=tuple(held),
        tags=dict(mv.tags or {}),
        created=_ms(mv.creation_timestamp),
        status=str(mv.status),
        stage=stage,
        source=str(mv.source or ""),
        store=store,
    )


def resolve(client: Any, tracking_uri: str, reference: str) -> ModelVersion:
    """Pin ``reference`` to the registered version it names now (aliases resolved now)."""
    name, alias, number = parse_reference(reference)
    with translate_errors(tracking_uri):
        if alias is not None:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(name, str(number))
        aliases = dict(client.get_registered_model(name).aliases)
    return version_record(mv, aliases, {}, store_id(tracking_uri))


def download_model(tracking_uri: str, version: ModelVersion, into: Path) -> Path:
    """Download ``version``'s model into ``into`` (created), with its run's drift reference
    and an identity file naming the version, run and store; returns ``into``."""
    import mlflow.artifacts

    with translate_errors(tracking_uri), using_tracking_uri(tracking_uri):
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=version.uri, dst_path=tmp, tracking_uri=tracking_uri
                )
            )
            if not (local / "MLmodel").is_file():
                raise NotFound(f"{version.uri} has no MLmodel file")
            shutil.copytree(local, into)
        if version.run_id:
            try:
                ref = mlflow.artifacts.download_artifacts(
                    run_id=version.run_id,
                    artifact_path=DRIFT_REFERENCE,
                    dst_path=str(into),
                    tracking_uri=tracking_uri,
                )
            except Exception:
                ref = ""  # a model without a reference serves normally, drift "unavailable"
            if ref and Path(ref) != into / DRIFT_REFERENCE:
                shutil.move(ref, into / DRIFT_REFERENCE)
        validation = _validation_metrics(tracking_uri, version.run_id)
    identity = {
        "name": version.name,
        "version": str(version.version),
        "run_id": version.run_id or "",
        "source": version.uri,
        "store": version.store,
        # The run's own held-out figures: the server exports them beside the quality that real
        # labels give, and the quality alert compares the two.
        "validation": validation,
    }
    (into / IDENTITY_FILE).write_text(json.dumps(identity, sort_keys=True))
    return into


VALIDATION_METRICS = ("accuracy", "f1_macro", "mae", "rmse")


def _validation_metrics(tracking_uri: str, run_id: str | None) -> dict[str, float]:
    """The run's latest values of the metrics realized quality is also measured in."""
    if not run_id:
        return {}
    from mlflow.tracking import MlflowClient

    try:
        metrics = MlflowClient(tracking_uri).get_run(run_id).data.metrics
    except Exception:  # a run that cannot be read: the image serves, without the comparison
        return {}
    return {k: float(metrics[k]) for k in VALIDATION_METRICS if k in metrics}
