"""The drift thresholds a model version was trained with, read from its drift reference.

The server judges drift against the thresholds in ``drift_reference.json`` (logged by training
beside the model and baked into the serving image), not against fixed numbers. It exports the
statistics but not the thresholds, so the console reads the same file from the version's run:
it then judges drift exactly as the server does, for images already deployed too.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from backends.defaults import DEFAULT_KS_PVALUE, DEFAULT_PSI
from backends.errors import BackendError, NotFound, Unavailable
from backends.mlflow.client import connect, translate_errors
from backends.mlflow.models import DRIFT_REFERENCE
from backends.records import DriftThresholds

__all__ = [
    "default_thresholds",
    "reference_thresholds",
    "thresholds_of",
]


def default_thresholds(why: str) -> DriftThresholds:
    """The server's defaults, saying why no reference supplied better ones."""
    return DriftThresholds(DEFAULT_PSI, DEFAULT_KS_PVALUE, f"default ({why})")


def thresholds_of(doc: Any, source: str) -> DriftThresholds:
    """The thresholds a drift reference document sets (the defaults for those it omits)."""
    thresholds = doc.get("thresholds") if isinstance(doc, dict) else None
    if thresholds is None:
        thresholds = {}
    try:
        psi = float(thresholds.get("psi", DEFAULT_PSI))
        pvalue = float(thresholds.get("ks_pvalue", DEFAULT_KS_PVALUE))
    except (AttributeError, TypeError, ValueError):
        # The server refuses such a reference and computes no drift at all.
        return default_thresholds(f"{source} has unreadable thresholds")
    return DriftThresholds(psi, pvalue, source)


def reference_thresholds(
    tracking_uri: str, model: str, version: int | None, *, client: Any = None
) -> DriftThresholds:
    """The thresholds of ``model`` version ``version``'s drift reference.

    The defaults when the version or its reference cannot be found; Unavailable when MLflow
    does not answer (ask again later). ``client``: the operation's MLflow client, if it has one.
    """
    if not model or version is None:
        return default_thresholds("the target does not name a registered version")
    client = client if client is not None else connect(tracking_uri)
    try:
        with translate_errors(tracking_uri):
            run_id = client.get_model_version(model, str(version)).run_id
    except NotFound:
        return default_thresholds(f"{model} v{version} is not in the registry")
    if not run_id:
        return default_thresholds(f"{model} v{version} has no source run")
    return _read_reference(client, tracking_uri, run_id)


def _read_reference(client: Any, tracking_uri: str, run_id: str) -> DriftThresholds:
    source = f"{DRIFT_REFERENCE} of run {run_id[:8]}"
    with tempfile.TemporaryDirectory(prefix="mlops-drift-") as tmp:
        try:
            with translate_errors(tracking_uri):
                path = client.download_artifacts(run_id, DRIFT_REFERENCE, tmp)
        except Unavailable:
            raise
        except BackendError:
            return default_thresholds(f"run {run_id[:8]} logged no {DRIFT_REFERENCE}")
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return default_thresholds(f"{source} is not JSON")
    return thresholds_of(doc, source)
