"""A gate policy (``gate.yaml``, format ``mlops-gate/1``), read and refused before anything is
evaluated: every key is known, every metric exists, every bound is a number in its range.

Columns are checked later, against the evaluation set (``check_columns``), because only the
data says which columns exist. The format, with every key, is in docs/gate-policy.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from backends.errors import InvalidInput

__all__ = [
    "CLASSIFIER_METRICS",
    "FORMAT",
    "REGRESSOR_METRICS",
    "Bootstrap",
    "ChampionRule",
    "EvaluationSource",
    "FairnessRule",
    "Floor",
    "Policy",
    "SliceRule",
    "SliceSpec",
    "check_columns",
    "higher_is_better",
    "load_policy",
    "parse_policy",
]

FORMAT = "mlops-gate/1"
CLASSIFIER_METRICS = ("accuracy", "f1", "precision", "recall")  # f1 and the others: macro
REGRESSOR_METRICS = ("mae", "rmse")
_METRICS = CLASSIFIER_METRICS + REGRESSOR_METRICS
DEFAULT_BINS = 4  # quantile bins of a numeric column that names no bins


def higher_is_better(metric: str) -> bool:
    return metric in CLASSIFIER_METRICS


@dataclass(frozen=True)
class Floor:
    """``metric`` at least ``bound`` (at most, for an error metric such as mae)."""

    metric: str
    bound: float

    def __str__(self) -> str:
        return f"{self.metric} {'≥' if higher_is_better(self.metric) else '≤'} {self.bound:g}"


@dataclass(frozen=True)
class ChampionRule:
    """No worse than the version holding the alias by more than ``max_drop`` on ``metric``."""

    metric: str
    max_drop: float


@dataclass(frozen=True)
class SliceSpec:
    """A slicing: one column, or a cross of several; ``bins`` per numeric column (a count of
    quantile bins or explicit edges; a numeric column with few distinct values is a category)."""

    columns: tuple[str, ...]
    bins: tuple[tuple[str, int | tuple[float, ...]], ...] = ()

    def bins_of(self, column: str) -> int | tuple[float, ...] | None:
        return dict(self.bins).get(column)

    @property
    def name(self) -> str:
        return " & ".join(self.columns)


@dataclass(frozen=True)
class SliceRule:
    specs: tuple[SliceSpec, ...]
    min_size: int
    floors: tuple[Floor, ...]


@dataclass(frozen=True)
class FairnessRule:
    """The spread of ``metric`` between the groups of ``column``: max - min at most
    ``max_difference``, min / max at least ``min_ratio`` (fairlearn's difference and ratio)."""

    column: str
    metric: str
    max_difference: float | None
    min_ratio: float | None
    bins: int | tuple[float, ...] | None = None


@dataclass(frozen=True)
class EvaluationSource:
    """Where the held-out rows come from: ``held_out`` (the split the training run logged),
    ``path`` (a CSV or Parquet file) or ``dataset`` (an MLflow dataset input of the run)."""

    kind: Literal["held_out", "path", "dataset"]
    value: str
    target: str

    def __str__(self) -> str:
        return "the held-out split the run logged" if self.kind == "held_out" else self.value


@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 200
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class Policy:
    source: str
    evaluation: EvaluationSource
    floors: tuple[Floor, ...]
    champion: tuple[ChampionRule, ...]
    slices: SliceRule | None
    fairness: tuple[FairnessRule, ...]
    bootstrap: Bootstrap
    undecided_passes: bool

    @property
    def task(self) -> Literal["classifier", "regressor"]:
        return "regressor" if self.metrics() & set(REGRESSOR_METRICS) else "classifier"

    def metrics(self) -> set[str]:
        found = {f.metric for f in self.floors} | {c.metric for c in self.champion}
        found |= {f.metric for f in self.fairness}
        if self.slices is not None:
            found |= {f.metric for f in self.slices.floors}
        return found

    def columns(self) -> dict[str, str]:
        """Every column the policy names → where it names it (for the refusal message)."""
        found: dict[str, str] = {}
        if self.slices is not None:
            for i, spec in enumerate(self.slices.specs):
                for column in spec.columns:
                    found.setdefault(column, f"slices.by[{i}]")
        for i, rule in enumerate(self.fairness):
            found.setdefault(rule.column, f"fairness[{i}].column")
        return found


def check_columns(policy: Policy, available: Iterable[str]) -> None:
    """InvalidInput naming every column the policy slices or groups by that ``available`` (the
    evaluation set's columns, its target left out) lacks, and where the policy names it."""
    known = sorted({str(c) for c in available})
    target = policy.evaluation.target
    missing = [
        f"{where}: column {column!r} is "
        + (
            "the target, not a column to group by"
            if column == target
            else "not in the evaluation set"
        )
        for column, where in policy.columns().items()
        if column not in known
    ]
    if missing:
        # Every one at once: a policy is corrected once, not once per column.
        raise InvalidInput(
            f"{policy.source}: {'; '.join(missing)} (its columns: {', '.join(known) or 'none'})"
        )


def load_policy(path: str | Path, source: str | None = None) -> Policy:
    """Read ``path`` (YAML); InvalidInput naming the key when anything in it is wrong
    (messages name ``source``, default the path)."""
    import yaml

    where = source or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{where}: cannot read the gate policy: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{where}: not YAML: {' '.join(str(exc).split())}") from None
    return parse_policy(data, where)


def parse_policy(data: Any, source: str = "gate.yaml") -> Policy:
    reader = _Reader(source)
    root = reader.mapping(data, "", required=True)
    reader.known(
        root,
        "",
        {"format", "evaluation", "metrics", "champion", "slices", "fairness", "bootstrap"}
        | {"undecided"},
    )
    if root.get("format", FORMAT) != FORMAT:
        reader.fail("format", f"is {root.get('format')!r}; this console reads {FORMAT!r}")
    policy = Policy(
        source=source,
        evaluation=reader.evaluation(root.get("evaluation")),
        floors=reader.floors(root.get("metrics"), "metrics"),
        champion=reader.champion(root.get("champion")),
        slices=reader.slices(root.get("slices")),
        fairness=reader.fairness(root.get("fairness")),
        bootstrap=reader.bootstrap(root.get("bootstrap")),
        undecided_passes=reader.undecided(root.get("undecided", "fail")),
    )
    kinds = {m in REGRESSOR_METRICS for m in policy.metrics()}
    if len(kinds) > 1:
        reader.fail(
            "metrics",
            "mixes classifier metrics (accuracy, f1, ...) with regressor ones (mae, rmse)",
        )
    if not policy.metrics():
        reader.fail("metrics", "the policy judges nothing: name at least one metric")
    return policy


class _Reader:
    """Reads one policy document, failing with the document's name and the key's path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> NoReturn:
        where = f"{self.source}: {key}" if key else self.source
        raise InvalidInput(f"{where}: {problem}")

    def mapping(self, value: Any, key: str, *, required: bool = False) -> dict[str, Any]:
        if value is None and not required:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            self.fail(key, f"expected a mapping of names, got {_kind(value)}")
        return dict(value)

    def known(self, mapping: dict[str, Any], key: str, allowed: set[str]) -> None:
        extra = sorted(set(mapping) - allowed)
        if extra:
            prefix = f"{key}." if key else ""
            self.fail(prefix + extra[0], f"unknown key (known here: {', '.join(sorted(allowed))})")

    def number(
        self, value: Any, key: str, *, low: float | None = None, high: float | None = None
    ) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(key, f"expected a number, got {_kind(value)}")
        number = float(value)
        if (low is not None and number < low) or (high is not None and number > high):
            self.fail(
                key,
                f"{number:g} is outside [{low:g}, {high:g}]"
                if low is not None and high is not None
                else f"{number:g} is out of range",
            )
        return number

    def integer(self, value: Any, key: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected a whole number, got {_kind(value)}")
        if not low <= value <= high:
            self.fail(key, f"{value} is outside [{low}, {high}]")
        return int(value)

    def metric(self, value: Any, key: str) -> str:
        if value not in _METRICS:
            self.fail(key, f"unknown metric {value!r} (known: {', '.join(_METRICS)})")
        return str(value)

    def column(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected a column name, got {_kind(value)}")
        return str(value)

    def evaluation(self, value: Any) -> EvaluationSource:
        spec = self.mapping(value, "evaluation")
        self.known(spec, "evaluation", {"held_out", "path", "dataset", "target"})
        target = self.column(spec.get("target", "target"), "evaluation.target")
        named = [k for k in ("path", "dataset") if spec.get(k) is not None]
        if spec.get("held_out") not in (None, True, False):
            self.fail("evaluation.held_out", "expected true or false")
        if spec.get("held_out") is True and named:
            self.fail("evaluation", f"names both held_out and {named[0]}: choose one")
        if len(named) > 1:
            self.fail("evaluation", "names both path and dataset: choose one")
        if not named:
            if spec.get("held_out") is False:
                self.fail("evaluation", "held_out is false and no path or dataset is named")
            return EvaluationSource("held_out", "", target)
        kind = named[0]
        text = spec[kind]
        if not isinstance(text, str) or not text.strip():
            self.fail(f"evaluation.{kind}", f"expected a {kind} name, got {_kind(text)}")
        return EvaluationSource("path" if kind == "path" else "dataset", text, target)

    def floors(self, value: Any, key: str) -> tuple[Floor, ...]:
        spec = self.mapping(value, key)
        found = []
        for name, bound in spec.items():
            metric = self.metric(name, f"{key}.{name}")
            sub = f"{key}.{name}"
            if isinstance(bound, dict):
                word = "min" if higher_is_better(metric) else "max"
                self.known(bound, sub, {word})
                if word not in bound:
                    self.fail(sub, f"expected {{{word}: NUMBER}}")
                bound, sub = bound[word], f"{sub}.{word}"
            top = 1.0 if higher_is_better(metric) else None
            found.append(Floor(metric, self.number(bound, sub, low=0.0, high=top)))
        return tuple(found)

    def champion(self, value: Any) -> tuple[ChampionRule, ...]:
        spec = self.mapping(value, "champion")
        found = []
        for name, rule in spec.items():
            key = f"champion.{name}"
            metric = self.metric(name, key)
            if isinstance(rule, dict):
                self.known(rule, key, {"max_drop"})
                rule, key = rule.get("max_drop"), f"{key}.max_drop"
            found.append(ChampionRule(metric, self.number(rule, key, low=0.0)))
        return tuple(found)

    def bins(self, value: Any, key: str) -> int | tuple[float, ...]:
        if isinstance(value, list):
            if not value:
                self.fail(key, "expected at least one bin edge")
            edges = tuple(self.number(v, f"{key}[{i}]") for i, v in enumerate(value))
            if any(b <= a for a, b in itertools.pairwise(edges)):
                self.fail(key, "bin edges must rise")
            return edges
        return self.integer(value, key, 2, 100)

    def slice_spec(self, value: Any, key: str) -> SliceSpec:
        if isinstance(value, str):
            return SliceSpec((self.column(value, key),))
        if isinstance(value, list):
            columns = tuple(self.column(c, f"{key}[{i}]") for i, c in enumerate(value))
            return self._spec(columns, key)
        spec = self.mapping(value, key)
        self.known(spec, key, {"column", "columns", "bins"})
        if ("column" in spec) == ("columns" in spec):
            self.fail(key, "expected one of column: NAME or columns: [NAME, ...]")
        if "column" in spec:
            column = self.column(spec["column"], f"{key}.column")
            bins = (
                ()
                if spec.get("bins") is None
                else ((column, self.bins(spec["bins"], f"{key}.bins")),)
            )
            return self._spec((column,), key, bins)
        listed = spec["columns"]
        if not isinstance(listed, list) or not listed:
            self.fail(f"{key}.columns", f"expected a list of columns, got {_kind(listed)}")
        columns = tuple(self.column(c, f"{key}.columns[{i}]") for i, c in enumerate(listed))
        raw = spec.get("bins")
        if raw is None:
            return self._spec(columns, key)
        if not isinstance(raw, dict):
            # One setting for every numeric column of the cross.
            setting = self.bins(raw, f"{key}.bins")
            return self._spec(columns, key, tuple((c, setting) for c in columns))
        for name in raw:
            if name not in columns:
                self.fail(f"{key}.bins.{name}", "is not one of this slice's columns")
        return self._spec(
            columns, key, tuple((c, self.bins(b, f"{key}.bins.{c}")) for c, b in raw.items())
        )

    def _spec(
        self,
        columns: tuple[str, ...],
        key: str,
        bins: tuple[tuple[str, int | tuple[float, ...]], ...] = (),
    ) -> SliceSpec:
        if len(set(columns)) != len(columns):
            self.fail(key, "names a column twice")
        if len(columns) > 3:
            self.fail(key, "crosses more than 3 columns (the slices would be too small to judge)")
        return SliceSpec(columns, bins)

    def slices(self, value: Any) -> SliceRule | None:
        if value is None:
            return None
        spec = self.mapping(value, "slices")
        self.known(spec, "slices", {"by", "min_size", "floor"})
        listed = spec.get("by")
        if not isinstance(listed, list) or not listed:
            self.fail("slices.by", f"expected a list of slicings, got {_kind(listed)}")
        specs = tuple(self.slice_spec(v, f"slices.by[{i}]") for i, v in enumerate(listed))
        min_size = self.integer(spec.get("min_size", 30), "slices.min_size", 1, 10**9)
        return SliceRule(specs, min_size, self.floors(spec.get("floor"), "slices.floor"))

    def fairness(self, value: Any) -> tuple[FairnessRule, ...]:
        if value is None:
            return ()
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            self.fail("fairness", f"expected a list of rules, got {_kind(value)}")
        found = []
        for i, raw in enumerate(value):
            key = f"fairness[{i}]"
            rule = self.mapping(raw, key, required=True)
            self.known(rule, key, {"column", "metric", "max_difference", "min_ratio", "bins"})
            column = self.column(rule.get("column"), f"{key}.column")
            metric = self.metric(rule.get("metric", "accuracy"), f"{key}.metric")
            diff = rule.get("max_difference")
            ratio = rule.get("min_ratio")
            if diff is None and ratio is None:
                self.fail(key, "names neither max_difference nor min_ratio")
            found.append(
                FairnessRule(
                    column,
                    metric,
                    None if diff is None else self.number(diff, f"{key}.max_difference", low=0.0),
                    None
                    if ratio is None
                    else self.number(ratio, f"{key}.min_ratio", low=0.0, high=1.0),
                    None if rule.get("bins") is None else self.bins(rule["bins"], f"{key}.bins"),
                )
            )
        return tuple(found)

    def bootstrap(self, value: Any) -> Bootstrap:
        spec = self.mapping(value, "bootstrap")
        self.known(spec, "bootstrap", {"resamples", "confidence", "seed"})
        return Bootstrap(
            resamples=self.integer(spec.get("resamples", 200), "bootstrap.resamples", 20, 100_000),
            confidence=self.number(
                spec.get("confidence", 0.95), "bootstrap.confidence", low=0.5, high=0.999
            ),
            seed=self.integer(spec.get("seed", 0), "bootstrap.seed", 0, 2**32 - 1),
        )

    def undecided(self, value: Any) -> bool:
        if value not in ("fail", "pass"):
            self.fail("undecided", f"expected fail or pass, got {value!r}")
        return bool(value == "pass")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"[:80]
