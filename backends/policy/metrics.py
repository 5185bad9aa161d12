"""Metrics from weighted counts, for a whole stack of bootstrap resamples at once.

A classifier's figures come from one confusion matrix per group and resample (``counts`` of
shape (S, G, K, K): resample, group, true class, predicted class); a regressor's from three
sums per group (rows, absolute error, squared error). Each metric matches scikit-learn's
(``f1``, ``precision`` and ``recall`` are macro averages over the classes that occur in the
group's truth or predictions, with zero for a class never predicted, as scikit-learn does).
"""

from __future__ import annotations

import numpy as np

__all__ = ["classifier_metric", "regressor_metric"]


def classifier_metric(metric: str, counts: np.ndarray) -> np.ndarray:
    """``metric`` per resample and group (S, G) from confusion counts (S, G, K, K); NaN where
    a group has no weight in a resample."""
    rows = counts.sum(axis=-1)  # per true class
    cols = counts.sum(axis=-2)  # per predicted class
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    total = rows.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "accuracy":
            return np.asarray(tp.sum(axis=-1) / total)
        present = (rows + cols) > 0
        if metric == "f1":
            per_class = np.where(present, 2.0 * tp / np.where(present, rows + cols, 1.0), 0.0)
        elif metric == "precision":
            per_class = np.where(cols > 0, tp / np.where(cols > 0, cols, 1.0), 0.0)
        elif metric == "recall":
            per_class = np.where(rows > 0, tp / np.where(rows > 0, rows, 1.0), 0.0)
        else:
            raise ValueError(f"not a classifier metric: {metric}")
        classes = present.sum(axis=-1)
        averaged = (per_class * present).sum(axis=-1) / classes
        return np.where(total > 0, averaged, np.nan)


def regressor_metric(metric: str, sums: np.ndarray) -> np.ndarray:
    """``metric`` per resample and group (S, G) from sums (S, 3, G): rows, |error|, error²."""
    rows, absolute, squared = sums[:, 0], sums[:, 1], sums[:, 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "mae":
            return np.where(rows > 0, absolute / rows, np.nan)
        if metric == "rmse":
            return np.where(rows > 0, np.sqrt(squared / rows), np.nan)
    raise ValueError(f"not a regressor metric: {metric}")
