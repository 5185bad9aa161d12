"""The steps of gated retraining: from drift on a serving model to a challenger that waits.

The steps, each recorded where an operator looks for it:
1. ``serving_state``: what the server answers as (``/version``) and its drift gauges
   (``/metrics``): PSI per feature and the KS p-value, against the thresholds.
2. ``retrain_params``: the serving run's own entry-point parameters with the new data, so the
   new run differs from its parent only in the data (whose digest the run records).
3. after training: tags on the new run (``mlops.retrain.parent_run_id``, ``.drift``), then
4. ``compare_on``: champion and challenger scored on the evaluation data; the challenger must
   be no worse (``tolerance``) before the ``challenger`` alias moves (the registry's own gate
   runs too), with the drift figures in the history's reason. Promotion to ``champion`` is a
   separate, human step (``--approve`` or the console's approval prompt).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backends.defaults import DEFAULT_KS_PVALUE, DEFAULT_PSI
from backends.errors import InvalidInput, Unavailable
from backends.mlflow.client import translate_errors, using_tracking_uri
from backends.prometheus.exposition import parse_exposition
from backends.records import version_number

__all__ = ["DriftFigures", "ServingState", "compare_on", "retrain_params", "serving_state"]


@dataclass(frozen=True)
class FeatureFigure:
    feature: str
    psi: float | None
    ks_pvalue: float | None


@dataclass(frozen=True)
class DriftFigures:
    features: tuple[FeatureFigure, ...]
    psi_threshold: float
    ks_pvalue_threshold: float

    def drifted_features(self) -> list[FeatureFigure]:
        return [
            f
            for f in self.features
            if (f.psi is not None and f.psi > self.psi_threshold)
            or (f.ks_pvalue is not None and f.ks_pvalue < self.ks_pvalue_threshold)
        ]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features())

    def summary(self) -> str:
        """One line for the history: the figures that triggered (or did not trigger) retraining."""
        if not self.features:
            return "no drift figures yet"
        shown = self.drifted_features() or sorted(self.features, key=lambda f: -(f.psi or 0.0))[:1]
        parts = [f"{f.feature} PSI={_fmt(f.psi)} KS p={_fmt(f.ks_pvalue)}" for f in shown]
        verdict = "drift" if self.drifted else "no drift"
        return (
            f"{verdict}: "
            + ", ".join(parts)
            + f" (thresholds PSI>{self.psi_threshold:g}, p<{self.ks_pvalue_threshold:g})"
        )


@dataclass(frozen=True)
class ServingState:
    url: str
    name: str
    version: int | None
    run_id: str
    alias: str
    drift_status: str
    drift: DriftFigures


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def serving_state(url: str, http: httpx.Client | None = None) -> ServingState:
    """What the server at ``url`` serves, and its current drift gauges, judged by the server's
    default thresholds (``retrain.serving`` judges them by the version's own reference)."""
    client = http or httpx.Client(timeout=5)
    try:
        version = client.get(f"{url}/version")
        metrics = client.get(f"{url}/metrics")
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"model server {url} is unreachable ({exc.__class__.__name__})",
            title="Server unreachable",
        ) from exc
    finally:
        if http is None:
            client.close()
    if version.status_code != 200:
        raise Unavailable(
            f"model server {url} is not ready ({version.status_code})", title="Server not ready"
        )
    info = version.json()
    exposition = parse_exposition(metrics.text)
    psi = {labels.get("feature", ""): v for labels, v in exposition.values("mlops_feature_psi")}
    pvalues = {
        labels.get("feature", ""): v for labels, v in exposition.values("mlops_feature_ks_pvalue")
    }
    features = tuple(FeatureFigure(f, psi.get(f), pvalues.get(f)) for f in sorted(psi))
    return ServingState(
        url=url,
        name=str(info.get("name") or ""),
        version=version_number(info.get("version")),
        run_id=str(info.get("run_id") or ""),
        alias=str(info.get("alias") or ""),
        drift_status=str(info.get("drift") or ""),
        drift=DriftFigures(features, DEFAULT_PSI, DEFAULT_KS_PVALUE),
    )


def declared_params(project_dir: Path) -> list[str]:
    """The parameter names of the project's ``main`` entry point."""
    import yaml

    spec = yaml.safe_load((project_dir / "MLproject").read_text()) or {}
    main = (spec.get("entry_points") or {}).get("main") or {}
    return list((main.get("parameters") or {}).keys())


def retrain_params(
    parent_params: dict[str, str], declared: list[str], data: Path
) -> dict[str, str]:
    """The parent run's parameters (those the project declares), with the new data."""
    if not data.is_file():
        raise InvalidInput(f"data file not found: {data}")
    if "data" not in declared:
        raise InvalidInput("the project's main entry point takes no 'data' parameter")
    params = {k: v for k, v in parent_params.items() if k in declared and k != "data"}
    params["data"] = str(data.resolve())
    return params


@dataclass(frozen=True)
class Comparison:
    metric: str
    champion: float
    challenger: float
    tolerance: float
    rows: int
    source: str = ""  # which rows, when they are not the retraining's own data file

    @property
    def passed(self) -> bool:
        return self.challenger >= self.champion - self.tolerance

    def summary(self) -> str:
        verdict = "not worse" if self.passed else "worse"
        return (
            f"challenger {verdict} than champion on {self.rows} "
            f"{self.source or 'evaluation'} rows: "
            f"{self.metric} {self.challenger:.4f} vs {self.champion:.4f}"
            f" (tolerance {self.tolerance:g})"
        )


def compare_on(
    tracking_uri: str,
    champion_uri: str,
    challenger_uri: str,
    data: Path,
    target: str = "target",
    tolerance: float = 0.0,
    source: str = "",
) -> Comparison:
    """Accuracy of both models on the labelled evaluation data."""
    import mlflow.pyfunc
    import pandas as pd

    frame = pd.read_csv(data)
    if target not in frame.columns:
        raise InvalidInput(f"{data} has no '{target}' column to evaluate against")
    labels = frame[target].to_numpy()
    scores = []
    with translate_errors(tracking_uri), using_tracking_uri(tracking_uri):
        for uri in (champion_uri, challenger_uri):
            model = mlflow.pyfunc.load_model(uri)
            columns = model.metadata.get_input_schema().input_names()
            predictions = model.predict(frame[columns])
            scores.append(float((_as_array(predictions) == labels).mean()))
    return Comparison("accuracy", scores[0], scores[1], tolerance, len(frame), source)


def _as_array(predictions: Any) -> Any:
    import numpy as np

    return np.asarray(predictions).reshape(-1)


def drift_tag(state: ServingState) -> str:
    """The drift figures as JSON, for the new run's tags."""
    return json.dumps(
        {
            "serving": {"name": state.name, "version": state.version, "run_id": state.run_id},
            "features": [f.__dict__ for f in state.drift.features],
            "thresholds": {
                "psi": state.drift.psi_threshold,
                "ks_pvalue": state.drift.ks_pvalue_threshold,
            },
        },
        sort_keys=True,
    )[:4900]  # MLflow tag values are capped at 5000 characters
