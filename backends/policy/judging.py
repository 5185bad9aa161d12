"""Judge a candidate by its policy on held-out rows: every figure with a bootstrap interval.

The bootstrap resamples rows with replacement (as fairlearn's and scikit-learn's do); a
resample is kept as the count of times each row was drawn, so every slicing and both models
are counted from one weight matrix per chunk of resamples, as a sparse product (no per-slice
Python loop). The champion is scored on the same resamples as the candidate, so their
difference is a paired comparison.

A check passes when its whole interval is on the right side of the threshold, fails when the
whole interval is on the wrong side, and is ``undecided`` when the interval holds the
threshold: the data cannot tell, and the policy's ``undecided`` setting decides (fail unless
it says pass). Noise alone therefore neither passes nor fails a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from backends.errors import InvalidInput
from backends.policy.metrics import classifier_metric, regressor_metric
from backends.policy.slices import Partition, partition, whole
from backends.policy.spec import Policy, SliceSpec, check_columns, higher_is_better
from backends.records import CheckKind, PolicyCheck, PolicyReport, SliceFigure, Verdict

__all__ = ["EvaluationData", "evaluate", "group_values"]

_CHUNK = 25  # resamples per weight matrix: rows x 25 float64 (20 MB at 100,000 rows)


@dataclass(frozen=True)
class EvaluationData:
    """Held-out rows with the truth and each model's predictions on them."""

    columns: dict[str, np.ndarray]
    truth: np.ndarray
    candidate: np.ndarray
    champion: np.ndarray | None = None
    champion_version: int | None = None
    dataset: str = ""
    digest: str = ""
    champion_problem: str = ""  # why the champion has no predictions, when it should

    @property
    def rows(self) -> int:
        return len(self.truth)


class _Scores:
    """Per slicing and model: the weighted counts of the sample (index 0) and every resample."""

    def __init__(self, policy: Policy, data: EvaluationData, parts: dict[str, Partition]) -> None:
        self.task = policy.task
        self.parts = parts
        n = data.rows
        if self.task == "classifier":
            classes, codes = _encode([data.truth, data.candidate, *_opt(data.champion)])
            self.k = len(classes)
            truth, models = codes[0], codes[1:]
        else:
            self.k = 0
            truth = _numbers(data.truth, "the truth")
            models = [
                _numbers(m, "the predictions") for m in [data.candidate, *_opt(data.champion)]
            ]
        pairs = [
            ((name, m), self._cells(part, truth, predicted))
            for name, part in parts.items()
            for m, predicted in enumerate(models)
        ]
        self.counts = _count(pairs, n, policy.bootstrap.resamples, policy.bootstrap.seed)

    def _cells(
        self, part: Partition, truth: np.ndarray, predicted: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Each row's cell and what it adds there: (cells, values, cell count).

        A classifier's cell is (group, true class, predicted class) and adds one; a
        regressor's rows add one, |error| and error² to three cells of their group."""
        if self.task == "classifier":
            cells = (part.codes * self.k + truth) * self.k + predicted
            return cells, np.ones((len(cells), 1)), part.groups * self.k * self.k
        error = predicted - truth
        values = np.stack([np.ones(len(error)), np.abs(error), error * error], axis=1)
        return part.codes, values, part.groups

    def metric(self, name: str, model: int, metric: str) -> np.ndarray:
        """(S, G): the metric per resample (row 0: the sample itself) and group."""
        counts = self.counts[(name, model)]
        groups = self.parts[name].groups
        if self.task == "classifier":
            return classifier_metric(metric, counts.reshape(len(counts), groups, self.k, self.k))
        # Stored cell-major: (S, G, 3) → (S, 3, G).
        return regressor_metric(metric, counts.reshape(len(counts), groups, 3).transpose(0, 2, 1))

    def sizes(self, name: str) -> np.ndarray:
        counts = self.counts[(name, 0)][0]
        groups = self.parts[name].groups
        if self.task == "classifier":
            return np.asarray(counts.reshape(groups, self.k * self.k).sum(axis=1))
        return np.asarray(counts.reshape(groups, 3)[:, 0])


def evaluate(policy: Policy, data: EvaluationData) -> PolicyReport:
    """The policy's every check on ``data``; InvalidInput when a column it names is missing
    (``backends.mlflow.gate_policy.prepare`` refuses that before a model predicts: this is the
    safety net for every other caller)."""
    _check_columns(policy, data)
    if data.rows == 0:
        raise InvalidInput("the evaluation set has no rows")
    parts: dict[str, Partition] = {"all": whole(data.rows)}
    for spec in policy.slices.specs if policy.slices else ():
        parts[f"slice:{spec.name}"] = partition(data.columns, spec)
    for rule in policy.fairness:
        spec = SliceSpec((rule.column,), () if rule.bins is None else ((rule.column, rule.bins),))
        parts[f"group:{rule.column}"] = partition(data.columns, spec)
    report = _Report(policy, data, _Scores(policy, data, parts))
    report.floors()
    report.champion()
    report.slices()
    report.fairness()
    return report.done()


class _Report:
    """The checks of one evaluation, added kind by kind."""

    def __init__(self, policy: Policy, data: EvaluationData, scores: _Scores) -> None:
        self.policy, self.data, self.scores = policy, data, scores
        self.judge = _Judge(policy)
        self.checks: list[PolicyCheck] = []
        self.ranked: list[tuple[float, SliceFigure]] = []  # worst first, once sorted
        self.unjudged: list[SliceFigure] = []
        self.min_size = policy.slices.min_size if policy.slices is not None else 1

    def floors(self) -> None:
        for floor in self.policy.floors:
            values = self.scores.metric("all", 0, floor.metric)[:, 0]
            self.checks.append(
                self.judge.check(
                    str(floor), "floor", floor.metric, values, floor.bound, self.data.rows
                )
            )

    def champion(self) -> None:
        data = self.data
        for rule in self.policy.champion:
            if data.champion is None:
                if data.champion_problem:  # there is one, and it could not be scored
                    self.checks.append(
                        _unmeasured(
                            f"{rule.metric} against v{data.champion_version}",
                            "champion",
                            rule.metric,
                            -rule.max_drop,
                            data.rows,
                            data.champion_problem,
                        )
                    )
                continue
            ours = self.scores.metric("all", 0, rule.metric)[:, 0]
            theirs = self.scores.metric("all", 1, rule.metric)[:, 0]
            higher = higher_is_better(rule.metric)
            diff = ours - theirs
            worse = "lower" if higher else "higher"
            self.checks.append(
                self.judge.check(
                    f"{rule.metric} not {worse} than v{data.champion_version} "
                    f"by more than {rule.max_drop:g}",
                    "champion",
                    rule.metric,
                    diff,
                    -rule.max_drop if higher else rule.max_drop,
                    data.rows,
                    higher=higher,
                    detail=f"candidate {ours[0]:.4g}, champion {theirs[0]:.4g} "
                    f"(difference {diff[0]:+.4g})",
                )
            )

    def slices(self) -> None:
        rule = self.policy.slices
        if rule is None:
            return
        rank_metric = _rank_metric(self.policy)
        higher = higher_is_better(rank_metric)
        for spec in rule.specs:
            name = f"slice:{spec.name}"
            sizes = self.scores.sizes(name)
            ranking = self.scores.metric(name, 0, rank_metric)[0]
            for g, label in enumerate(self.scores.parts[name].labels):
                rows = round(float(sizes[g]))
                figure = SliceFigure(label, rows, rank_metric, _finite(ranking[g]))
                if rows < rule.min_size:
                    self.unjudged.append(figure)
                    continue
                if figure.value is not None:  # a slice without a figure is not among the worst
                    worse = figure.value if higher else -figure.value
                    self.ranked.append((worse, figure))
                for floor in rule.floors:
                    values = self.scores.metric(name, 0, floor.metric)[:, g]
                    self.checks.append(
                        self.judge.check(
                            f"{label}: {floor}", "slice", floor.metric, values, floor.bound, rows
                        )
                    )
        self.ranked.sort(key=lambda ranked: ranked[0])

    def fairness(self) -> None:
        rows = self.data.rows
        for rule in self.policy.fairness:
            name = f"group:{rule.column}"
            labels = self.scores.parts[name].labels
            sizes = self.scores.sizes(name)
            keep = [g for g in range(len(labels)) if sizes[g] >= self.min_size]
            everyone = self.scores.metric(name, 0, rule.metric)
            values = everyone[:, keep]
            detail = ", ".join(
                f"{labels[g]} {values[0, i]:.4g} (n={round(float(sizes[g]))})"
                for i, g in enumerate(keep)
            )
            # A small group's own figure, as a small slice's (none when it has no rows).
            self.unjudged += [
                SliceFigure(labels[g], round(float(sizes[g])), rule.metric, _finite(everyone[0, g]))
                for g in range(len(labels))
                if g not in keep
            ]
            subject = f"between groups of {rule.column}"
            if len(keep) < 2:
                problem = f"fewer than two groups of {self.min_size}+ rows: {detail or 'none'}"
                for what, bound in (("difference", rule.max_difference), ("ratio", rule.min_ratio)):
                    if bound is not None:
                        self.checks.append(
                            _unmeasured(
                                f"{rule.metric} {what} {subject}",
                                "fairness",
                                rule.metric,
                                bound,
                                rows,
                                problem,
                            )
                        )
                continue
            with np.errstate(invalid="ignore", divide="ignore"):
                top, bottom = np.nanmax(values, axis=1), np.nanmin(values, axis=1)
                spread, ratio = top - bottom, np.where(top > 0, bottom / top, np.nan)
            if rule.max_difference is not None:
                self.checks.append(
                    self.judge.check(
                        f"{rule.metric} difference {subject[len(rule.metric) + 1 :]} "
                        f"≤ {rule.max_difference:g}",
                        "fairness",
                        rule.metric,
                        spread,
                        rule.max_difference,
                        rows,
                        higher=False,
                        detail=detail,
                    )
                )
            if rule.min_ratio is not None:
                self.checks.append(
                    self.judge.check(
                        f"{rule.metric} ratio {subject[len(rule.metric) + 1 :]} "
                        f"≥ {rule.min_ratio:g}",
                        "fairness",
                        rule.metric,
                        ratio,
                        rule.min_ratio,
                        rows,
                        higher=True,
                        detail=detail,
                    )
                )

    def done(self) -> PolicyReport:
        policy, data = self.policy, self.data
        verdicts = {c.verdict for c in self.checks}
        passed = "fail" not in verdicts and ("undecided" not in verdicts or policy.undecided_passes)
        return PolicyReport(
            policy=policy.source,
            dataset=data.dataset,
            digest=data.digest,
            rows=data.rows,
            resamples=policy.bootstrap.resamples,
            confidence=policy.bootstrap.confidence,
            champion_version=data.champion_version if data.champion is not None else None,
            checks=tuple(self.checks),
            worst_slices=tuple(figure for _, figure in self.ranked[:3]),
            unjudged=tuple(self.unjudged),
            undecided_passes=policy.undecided_passes,
            passed=passed,
        )


def _unmeasured(
    name: str, kind: CheckKind, metric: str, bound: float, rows: int, problem: str
) -> PolicyCheck:
    """A check the policy asks for that the data cannot measure: undecided, saying why."""
    return PolicyCheck(name, kind, metric, None, bound, None, None, "undecided", rows, problem)


def group_values(
    policy: Policy, data: EvaluationData, column: str, metric: str
) -> dict[str, float]:
    """The point value of ``metric`` per group of ``column`` (what fairlearn's MetricFrame
    ``by_group`` gives): for the benchmark and for reading a report's figures back."""
    spec = SliceSpec((column,))
    parts = {"all": whole(data.rows), "g": partition(data.columns, spec)}
    scores = _Scores(policy, data, parts)
    values = scores.metric("g", 0, metric)[0]
    return dict(zip(parts["g"].labels, values.tolist(), strict=True))


class _Judge:
    def __init__(self, policy: Policy) -> None:
        alpha = (1.0 - policy.bootstrap.confidence) / 2.0
        self.quantiles = (alpha, 1.0 - alpha)

    def check(
        self,
        name: str,
        kind: CheckKind,
        metric: str,
        values: np.ndarray,
        bound: float,
        rows: int,
        *,
        higher: bool | None = None,
        detail: str = "",
    ) -> PolicyCheck:
        """``values[0]`` is the sample's figure, ``values[1:]`` the resamples'."""
        higher = higher_is_better(metric) if higher is None else higher
        resampled = values[1:][np.isfinite(values[1:])]
        point = _finite(values[0])
        if resampled.size == 0 or point is None:
            return _unmeasured(name, kind, metric, bound, rows, detail or "no figure: no rows")
        low, high = (float(q) for q in np.quantile(resampled, self.quantiles))
        verdict: Verdict
        if higher:
            verdict = "pass" if low >= bound else "fail" if high < bound else "undecided"
        else:
            verdict = "pass" if high <= bound else "fail" if low > bound else "undecided"
        return PolicyCheck(name, kind, metric, point, bound, low, high, verdict, rows, detail)


def _rank_metric(policy: Policy) -> str:
    if policy.slices is not None and policy.slices.floors:
        return policy.slices.floors[0].metric
    for floor in policy.floors:
        return floor.metric
    return sorted(policy.metrics())[0]


def _count(
    pairs: list[tuple[tuple[str, int], tuple[np.ndarray, np.ndarray, int]]],
    rows: int,
    resamples: int,
    seed: int,
) -> dict[tuple[str, int], np.ndarray]:
    """Per (slicing, model): the summed values of each cell, for the sample (index 0) and
    every resample, as (S, cells x values) arrays.

    Rows that fall in the same cell of every slicing for every model are one *type*; a
    resample is counted once, as draws per type (one gather and one bincount over the drawn
    rows), and each slicing's cells are then sums over types: the cost is rows x resamples
    once, not once per slicing and model.
    """
    if all(values.shape[1] == 1 for _, (_, values, _) in pairs):
        types, first = _types([c for _, (c, _, _) in pairs], [size for _, (_, _, size) in pairs])
    else:
        # A regressor's rows add their own errors: each row is its own type.
        types = first = np.arange(rows, dtype=np.intp)
    kinds = len(first)
    rng = np.random.default_rng(seed)
    per_type = [np.bincount(types, minlength=kinds)[None, :].astype(np.float64)]
    left = resamples
    while left:
        size = min(_CHUNK, left)
        drawn = types[rng.integers(0, rows, size=(size, rows))]
        drawn += (np.arange(size) * kinds)[:, None]
        per_type.append(
            np.bincount(drawn.ravel(), minlength=size * kinds).reshape(size, kinds).astype(float)
        )
        left -= size
    draws = np.concatenate(per_type)  # (S, types)
    found = {}
    for key, (cells, values, size) in pairs:
        width = values.shape[1]
        if width == 1:
            # Every row adds one: a type's cell is its first row's.
            matrix = sparse.csr_matrix(
                (np.ones(kinds), (cells[first], np.arange(kinds))), shape=(size, kinds)
            )
            found[key] = np.asarray(matrix @ draws.T).T
        else:
            matrix = sparse.csr_matrix(
                (np.ones(kinds), (cells[first], np.arange(kinds))), shape=(size, kinds)
            )
            found[key] = np.stack(
                [np.asarray(matrix @ (draws * values[:, j]).T).T for j in range(width)], 2
            ).reshape(len(draws), size * width)
    return found


def _types(codes: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's type (rows with the same code in every array) and each type's first row."""
    combined = np.zeros(len(codes[0]), dtype=np.int64)
    span = 1
    for array, size in zip(codes, sizes, strict=True):
        if span * size >= 2**62:  # no room left: renumber what there is so far
            _, combined = np.unique(combined, return_inverse=True)
            span = int(combined.max()) + 1
        combined = combined * size + array
        span *= size
    kinds, first, types = np.unique(combined, return_index=True, return_inverse=True)
    del kinds
    return types.astype(np.intp, copy=False), first


def _encode(arrays: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Class labels as codes shared by the truth and every model's predictions."""
    if all(np.asarray(a).dtype.kind in "iufb" for a in arrays):
        stacked = [np.asarray(a) for a in arrays]
    else:
        stacked = [
            np.asarray([str(v) for v in np.asarray(a).tolist()], dtype=object) for a in arrays
        ]
    classes, inverse = np.unique(np.concatenate(stacked), return_inverse=True)
    codes, start = [], 0
    for a in stacked:
        codes.append(inverse[start : start + len(a)].astype(np.intp))
        start += len(a)
    return classes, codes


def _numbers(values: np.ndarray, what: str) -> np.ndarray:
    try:
        numbers = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} are not numbers, as a regressor's metrics need") from None
    if not np.isfinite(numbers).all():
        raise InvalidInput(f"{what} hold missing or infinite values")
    return numbers


def _opt(value: np.ndarray | None) -> list[np.ndarray]:
    return [] if value is None else [value]


def _finite(value: float) -> float | None:
    """A figure, or None where there is none (a group without rows): never a made-up 0."""
    return float(value) if np.isfinite(value) else None


def _check_columns(policy: Policy, data: EvaluationData) -> None:
    check_columns(policy, data.columns)
    lengths = {len(data.truth), len(data.candidate), *(len(v) for v in data.columns.values())}
    if data.champion is not None:
        lengths.add(len(data.champion))
    if len(lengths) > 1:
        raise InvalidInput("the truth, the predictions and the columns differ in length")
