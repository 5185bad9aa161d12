"""Rows into groups: a slicing (one column or a cross) becomes a code per row and a name per
group. Numeric columns with many distinct values are binned (quantile bins of the evaluation
set, or the policy's own edges); anything else is a category; a missing value is a group."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from backends.policy.spec import DEFAULT_BINS, SliceSpec

__all__ = ["Partition", "partition", "whole"]

# A numeric column with at most this many distinct values is read as categories (a class
# label, a count of children), not binned.
_CATEGORY_LIMIT = 10


@dataclass(frozen=True)
class Partition:
    """Every row in exactly one group: ``codes[i]`` indexes ``labels``."""

    name: str
    codes: np.ndarray  # intp, one per row
    labels: tuple[str, ...]

    @property
    def groups(self) -> int:
        return len(self.labels)


def whole(rows: int) -> Partition:
    return Partition("all", np.zeros(rows, dtype=np.intp), ("all rows",))


def partition(columns: dict[str, np.ndarray], spec: SliceSpec) -> Partition:
    """The groups of ``spec`` over ``columns`` (each column one array of the rows)."""
    parts = [_column(name, columns[name], spec.bins_of(name)) for name in spec.columns]
    codes, labels = parts[0]
    for more_codes, more_labels in parts[1:]:
        combined = codes * len(more_labels) + more_codes
        # Only the crossings that occur become groups (a cross of three binned columns would
        # otherwise name dozens of empty ones).
        used, codes = np.unique(combined, return_inverse=True)
        labels = tuple(
            f"{labels[c // len(more_labels)]} & {more_labels[c % len(more_labels)]}" for c in used
        )
    return Partition(spec.name, codes.astype(np.intp, copy=False), tuple(labels))


def _column(
    name: str, values: np.ndarray, bins: int | tuple[float, ...] | None
) -> tuple[np.ndarray, tuple[str, ...]]:
    if values.dtype.kind in "iuf":
        numbers = values.astype(float, copy=False)
        finite = numbers[np.isfinite(numbers)]
        if bins is not None or np.unique(finite).size > _CATEGORY_LIMIT:
            return _binned(name, numbers, finite, DEFAULT_BINS if bins is None else bins)
    return _categories(name, values)


def _binned(
    name: str, numbers: np.ndarray, finite: np.ndarray, bins: int | tuple[float, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    if isinstance(bins, int):
        inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        # Duplicate quantiles collapse: a column with a heavy value has fewer bins.
        edges = np.unique(np.quantile(finite, inner)) if finite.size else np.array([])
    else:
        edges = np.asarray(bins, dtype=float)
    codes = np.searchsorted(edges, numbers, side="right")
    labels = [f"{name} < {edges[0]:g}"] if edges.size else [f"{name} (all)"]
    labels += [f"{name} ∈ [{a:g}, {b:g})" for a, b in itertools.pairwise(edges)]
    if edges.size:
        labels.append(f"{name} ≥ {edges[-1]:g}")
    missing = ~np.isfinite(numbers)
    if missing.any():
        codes = np.where(missing, len(labels), codes)
        labels.append(f"{name} missing")
    return codes, tuple(labels)


def _categories(name: str, values: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    objects = np.asarray(values, dtype=object)
    # Elementwise: None, and NaN (the one value unequal to itself), are missing.
    missing = (objects == None) | (objects != objects)  # noqa: E711
    texts = np.where(missing, "", objects).astype(str)
    found, codes = np.unique(texts, return_inverse=True)
    labels = tuple(f"{name} missing" if v == "" else f"{name}={v}" for v in found.tolist())
    return codes, labels
