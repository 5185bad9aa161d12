"""The gate policy: read and refused with the key named; every figure equals scikit-learn's on
the same rows; verdicts follow the bootstrap interval, not the point value; a figure that cannot
be computed is absent, never 0; the evaluation set is chosen from the run's inputs whatever
order the store lists them in; a run without a policy says so."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    root_mean_squared_error,
)

from backends.errors import InvalidInput
from backends.mlflow import gate_policy
from backends.policy import (
    EvaluationData,
    evaluate,
    from_dict,
    group_values,
    load_policy,
    parse_policy,
    render,
    report_dict,
)
from backends.policy.spec import check_columns


def _classes(n: int, seed: int = 0, accuracy: float = 0.85) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    predicted = np.where(rng.random(n) < accuracy, truth, rng.integers(0, 3, n))
    return truth, predicted


# ------------------------------------------------------------------ reading the policy


@pytest.mark.parametrize(
    ("document", "names"),
    [
        ({"metrics": {"accuracyy": 0.9}}, ["metrics.accuracyy", "unknown metric", "accuracy"]),
        ({"metrics": {"accuracy": 1.5}}, ["metrics.accuracy", "outside"]),
        ({"metrics": {"accuracy": "high"}}, ["metrics.accuracy", "expected a number"]),
        ({"metrics": {"accuracy": {"max": 0.9}}}, ["metrics.accuracy.max", "unknown key"]),
        ({"metrics": {"accuracy": 0.9}, "slice": {}}, ["slice", "unknown key"]),
        ({"metrics": {"accuracy": 0.9, "mae": {"max": 1}}}, ["metrics", "mixes"]),
        ({"champion": {"f1": {"max_drop": -1}}}, ["champion.f1.max_drop"]),
        ({"metrics": {"f1": 0.5}, "slices": {"by": []}}, ["slices.by", "expected a list"]),
        (
            {"metrics": {"f1": 0.5}, "slices": {"by": [{"column": "x", "bins": [2, 1]}]}},
            ["slices.by[0].bins", "rise"],
        ),
        (
            {"metrics": {"f1": 0.5}, "slices": {"by": [{"columns": ["a", "a"]}]}},
            ["slices.by[0]", "twice"],
        ),
        ({"metrics": {"f1": 0.5}, "fairness": [{"column": "sex"}]}, ["fairness[0]", "neither"]),
        ({"metrics": {"f1": 0.5}, "bootstrap": {"resamples": 3}}, ["bootstrap.resamples"]),
        ({"metrics": {"f1": 0.5}, "undecided": "maybe"}, ["undecided", "fail or pass"]),
        ({"metrics": {"f1": 0.5}, "evaluation": {"path": "a.csv", "dataset": "d"}}, ["both"]),
        ({"format": "mlops-gate/9", "metrics": {"f1": 0.5}}, ["format", "mlops-gate/1"]),
        ({}, ["judges nothing"]),
        ([1, 2], ["expected a mapping"]),
    ],
)
def test_a_bad_policy_is_refused_naming_the_key(document: object, names: list[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(document, "projects/x/gate.yaml")
    message = str(caught.value)
    assert message.startswith("projects/x/gate.yaml")
    for name in names:
        assert name in message


def test_a_policy_file_that_is_not_yaml_is_refused(tmp_path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("metrics: [unclosed\n")
    with pytest.raises(InvalidInput, match="not YAML"):
        load_policy(path)
    with pytest.raises(InvalidInput, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_the_shipped_example_policies_read() -> None:
    iris = load_policy("examples/iris/gate.yaml")
    assert iris.slices is not None and any(s.bins for s in iris.slices.specs)
    assert iris.evaluation.kind == "held_out"
    loans = load_policy("examples/loans/gate.yaml")
    assert loans.fairness and loans.fairness[0].column == "group"


def test_a_column_the_data_lacks_is_refused_before_evaluating() -> None:
    policy = parse_policy({"metrics": {"accuracy": 0.5}, "slices": {"by": ["age"]}}, "gate.yaml")
    truth, predicted = _classes(50)
    with pytest.raises(InvalidInput) as caught:
        evaluate(policy, EvaluationData({"height": np.arange(50.0)}, truth, predicted))
    assert "slices.by[0]" in str(caught.value) and "'age'" in str(caught.value)
    assert "height" in str(caught.value)


def test_every_missing_column_is_named_at_once_and_the_target_is_not_a_group() -> None:
    policy = parse_policy(
        {
            "metrics": {"accuracy": 0.5},
            "slices": {"by": ["age", ["height", "target"]]},
            "fairness": [{"column": "sex", "max_difference": 0.1}],
        },
        "gate.yaml",
    )
    check_columns(policy, ["age", "height", "target", "sex"])  # all there: nothing said
    with pytest.raises(InvalidInput) as caught:
        check_columns(policy, ["height"])
    message = str(caught.value)
    assert "slices.by[0]: column 'age'" in message
    assert "fairness[0].column: column 'sex'" in message
    assert "slices.by[1]: column 'target' is the target" in message
    assert message.endswith("(its columns: height)")


# ------------------------------------------------------------------ figures


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classifier_figures_equal_scikit_learn_per_group(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 600
    truth, predicted = _classes(n, seed)
    group = rng.choice(["a", "b", "c"], n)
    # A group where one class is never predicted and one never occurs: the macro averages
    # must leave out and zero what scikit-learn leaves out and zeroes.
    predicted[group == "c"] = np.where(truth[group == "c"] == 2, 1, truth[group == "c"])
    truth[(group == "c") & (truth == 0)] = 1
    data = EvaluationData({"g": group}, truth, predicted)
    policy = parse_policy({"metrics": {"accuracy": 0.1}})
    sk = {
        "accuracy": accuracy_score,
        "f1": lambda a, b: f1_score(a, b, average="macro"),
        "precision": lambda a, b: precision_score(a, b, average="macro", zero_division=0),
        "recall": lambda a, b: recall_score(a, b, average="macro", zero_division=0),
    }
    for metric, score in sk.items():
        ours = group_values(policy, data, "g", metric)
        for name in ("a", "b", "c"):
            mask = group == name
            assert ours[f"g={name}"] == pytest.approx(
                score(truth[mask], predicted[mask]), abs=1e-12
            )


def test_regressor_figures_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(size=400)
    predicted = truth + rng.normal(scale=0.5, size=400)
    group = rng.choice(["x", "y"], 400)
    policy = parse_policy({"metrics": {"mae": {"max": 10}, "rmse": 10}})
    data = EvaluationData({"g": group}, truth, predicted)
    for metric, score in (("mae", mean_absolute_error), ("rmse", root_mean_squared_error)):
        ours = group_values(policy, data, "g", metric)
        for name in ("x", "y"):
            mask = group == name
            assert ours[f"g={name}"] == pytest.approx(score(truth[mask], predicted[mask]))
    report = evaluate(policy, data)
    assert report.passed and {c.metric for c in report.checks} == {"mae", "rmse"}


def test_string_labels_and_numeric_labels_are_classes() -> None:
    truth = np.array(["cat", "dog", "dog", "cat"] * 25, dtype=object)
    predicted = np.array(["cat", "dog", "cat", "cat"] * 25, dtype=object)
    policy = parse_policy({"metrics": {"accuracy": 0.5}})
    report = evaluate(policy, EvaluationData({}, truth, predicted))
    assert report.checks[0].value == pytest.approx(0.75)


# ------------------------------------------------------------------ verdicts


def test_verdicts_follow_the_interval_not_the_point_value() -> None:
    policy = parse_policy({"metrics": {"accuracy": 0.8}})
    # 0.85 on 40 rows: the interval holds 0.8, so the data cannot tell.
    truth = np.zeros(40, dtype=int)
    few = truth.copy()
    few[:6] = 1
    small = evaluate(policy, EvaluationData({}, truth, few))
    check = small.checks[0]
    assert check.value == pytest.approx(0.85)
    assert check.low is not None and check.high is not None
    assert check.low < 0.8 < check.high
    assert check.verdict == "undecided" and not small.passed
    lenient = parse_policy({"metrics": {"accuracy": 0.8}, "undecided": "pass"})
    assert evaluate(lenient, EvaluationData({}, truth, few)).passed
    # The same 0.85 on 4,000 rows is clearly above the floor; 0.75 clearly below.
    truth = np.zeros(4000, dtype=int)
    good = truth.copy()
    good[:600] = 1
    assert evaluate(policy, EvaluationData({}, truth, good)).checks[0].verdict == "pass"
    bad = truth.copy()
    bad[:1000] = 1
    failed = evaluate(policy, EvaluationData({}, truth, bad))
    assert failed.checks[0].verdict == "fail" and not failed.passed


def test_the_champion_comparison_is_paired() -> None:
    truth, champion = _classes(3000, 4, accuracy=0.9)
    policy = parse_policy({"champion": {"accuracy": {"max_drop": 0.01}}})
    # The same predictions: a difference of exactly zero on every resample.
    same = evaluate(policy, EvaluationData({}, truth, champion.copy(), champion, 7))
    check = same.checks[0]
    assert (check.value, check.low, check.high, check.verdict) == (0.0, 0.0, 0.0, "pass")
    assert same.champion_version == 7
    # Worse on 5 % of the rows the champion got right: a clear failure.
    worse = champion.copy()
    right = np.flatnonzero(worse == truth)[:150]
    worse[right] = (truth[right] + 1) % 3
    failed = evaluate(policy, EvaluationData({}, truth, worse, champion, 7)).checks[0]
    assert failed.verdict == "fail" and failed.value == pytest.approx(-150 / 3000)
    assert "champion" in failed.detail


def test_no_champion_means_no_comparison() -> None:
    truth, predicted = _classes(200)
    policy = parse_policy({"metrics": {"accuracy": 0.5}, "champion": {"accuracy": 0.01}})
    report = evaluate(policy, EvaluationData({}, truth, predicted))
    assert report.champion_version is None
    assert [c.kind for c in report.checks] == ["floor"]
    assert "nothing to compare" in render(report)


def test_slices_binned_and_crossed_small_ones_reported_not_judged() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    truth, predicted = _classes(n, 5, accuracy=0.95)
    length = rng.uniform(0, 10, n)
    kind = rng.choice(["p", "q"], n, p=[0.99, 0.01])
    # The model is poor on long items.
    long_rows = length >= 7.5
    predicted[long_rows] = np.where(rng.random(long_rows.sum()) < 0.5, truth[long_rows], 9)
    policy = parse_policy(
        {
            "metrics": {"accuracy": 0.5},
            "slices": {
                "min_size": 50,
                "by": [{"column": "length", "bins": [2.5, 5, 7.5]}, ["kind", "length"]],
                "floor": {"accuracy": 0.8},
            },
        }
    )
    report = evaluate(policy, EvaluationData({"length": length, "kind": kind}, truth, predicted))
    names = {c.name: c for c in report.checks if c.kind == "slice"}
    assert names["length ≥ 7.5: accuracy ≥ 0.8"].verdict == "fail"
    assert names["length < 2.5: accuracy ≥ 0.8"].verdict == "pass"
    assert report.worst_slices[0].slice.endswith("length ≥ 7.5")
    assert all(s.rows < 50 for s in report.unjudged)
    assert any(s.slice.startswith("kind=q") for s in report.unjudged)
    assert not any(c.name.startswith("kind=q") for c in report.checks)
    assert not report.passed
    text = render(report)
    assert "worst slices" in text and "too small to judge" in text


def test_quantile_bins_and_missing_values_are_groups() -> None:
    rng = np.random.default_rng(6)
    values = rng.normal(size=1000)
    values[:100] = np.nan
    truth, predicted = _classes(1000, 6)
    policy = parse_policy(
        {"metrics": {"accuracy": 0.1}, "slices": {"min_size": 1, "by": ["v"], "floor": {"f1": 0}}}
    )
    report = evaluate(policy, EvaluationData({"v": values}, truth, predicted))
    labels = [c.name for c in report.checks if c.kind == "slice"]
    assert len(labels) == 5 and any("v missing" in name for name in labels)
    sizes = sorted(c.rows for c in report.checks if c.kind == "slice")
    assert sizes[0] == 100 and sum(sizes) == 1000


def test_fairness_difference_and_ratio_between_groups() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    truth, predicted = _classes(n, 7, accuracy=0.95)
    group = rng.choice(["A", "B"], n)
    unfair = (group == "B") & (rng.random(n) < 0.3)
    predicted[unfair] = (truth[unfair] + 1) % 3
    policy = parse_policy(
        {
            "metrics": {"accuracy": 0.5},
            "fairness": {
                "column": "group",
                "metric": "accuracy",
                "max_difference": 0.05,
                "min_ratio": 0.9,
            },
        }
    )
    report = evaluate(policy, EvaluationData({"group": group}, truth, predicted))
    by_group = {g: accuracy_score(truth[group == g], predicted[group == g]) for g in ("A", "B")}
    spread = next(c for c in report.checks if "difference" in c.name)
    ratio = next(c for c in report.checks if "ratio" in c.name)
    assert spread.value == pytest.approx(by_group["A"] - by_group["B"])
    assert ratio.value == pytest.approx(by_group["B"] / by_group["A"])
    assert spread.verdict == "fail" and ratio.verdict == "fail"
    assert "group=B" in spread.detail
    fair = evaluate(
        policy, EvaluationData({"group": group}, truth, np.where(unfair, truth, predicted))
    )
    assert fair.passed, render(fair)


def test_a_single_group_is_undecided_not_a_pass() -> None:
    truth, predicted = _classes(100)
    policy = parse_policy(
        {"metrics": {"accuracy": 0.1}, "fairness": [{"column": "g", "max_difference": 0.1}]}
    )
    report = evaluate(policy, EvaluationData({"g": np.array(["only"] * 100)}, truth, predicted))
    assert [c.verdict for c in report.checks if c.kind == "fairness"] == ["undecided"]
    assert "fewer than two groups" in report.checks[-1].detail
    assert not report.passed


def test_the_same_seed_gives_the_same_report_and_json_reads_back() -> None:
    truth, predicted = _classes(500, 8)
    policy = parse_policy({"metrics": {"f1": 0.5}, "bootstrap": {"seed": 3, "resamples": 50}})
    first = evaluate(policy, EvaluationData({}, truth, predicted, dataset="d", digest="x"))
    second = evaluate(policy, EvaluationData({}, truth, predicted, dataset="d", digest="x"))
    assert first == second
    document = json.loads(json.dumps(report_dict(first)))
    assert document["format"] == "mlops-gate-report/1" and document["counts"]["pass"] == 1
    assert from_dict(document) == first


# ------------------------------------------------------------------ figures that do not exist


def test_a_slice_without_rows_has_no_figure_and_is_never_among_the_worst() -> None:
    rng = np.random.default_rng(9)
    n = 400
    truth, predicted = _classes(n, 9, accuracy=0.9)
    length = rng.uniform(0, 4, n)  # nothing reaches the last explicit bin
    document = {
        "metrics": {"accuracy": 0.5},
        "slices": {
            "min_size": 20,
            "by": [{"column": "length", "bins": [1, 2, 3, 10]}],
            "floor": {"accuracy": 0.5},
        },
    }
    data = EvaluationData({"length": length}, truth, predicted)
    report = evaluate(parse_policy(document), data)
    (empty,) = report.unjudged
    assert (empty.slice, empty.rows, empty.value) == ("length ≥ 10", 0, None)
    assert json.loads(json.dumps(report_dict(report)))["unjudged"][0]["value"] is None
    assert "length ≥ 10: 0 rows, accuracy n/a" in render(report)
    assert from_dict(json.loads(json.dumps(report_dict(report)))) == report
    # Judged (no minimum size), the empty slice is undecided, and still not ranked: before,
    # its made-up 0 came first among the worst.
    policy = parse_policy(document)
    assert policy.slices is not None
    judged = evaluate(
        dataclasses.replace(policy, slices=dataclasses.replace(policy.slices, min_size=0)), data
    )
    check = next(c for c in judged.checks if c.name.startswith("length ≥ 10"))
    assert (check.value, check.verdict) == (None, "undecided")
    assert len(judged.worst_slices) == 3
    assert all(s.value is not None for s in judged.worst_slices)
    assert "length ≥ 10" not in {s.slice for s in judged.worst_slices}


def test_a_fairness_group_too_small_to_judge_keeps_its_own_figure_or_none() -> None:
    rng = np.random.default_rng(10)
    n = 600
    truth, predicted = _classes(n, 10)
    group = rng.choice(["A", "B", "C"], n, p=[0.5, 0.48, 0.02])
    income = rng.uniform(0, 50, n)  # nothing reaches the last explicit bin
    policy = parse_policy(
        {
            "metrics": {"accuracy": 0.1},
            "slices": {"min_size": 30, "by": ["group"]},
            "fairness": [
                {"column": "group", "max_difference": 0.5},
                {"column": "income", "bins": [25, 100], "max_difference": 0.5},
            ],
        }
    )
    report = evaluate(policy, EvaluationData({"group": group, "income": income}, truth, predicted))
    small = [s for s in report.unjudged if s.slice == "group=C"]
    # Once as a slice, once as a fairness group: both with group C's own accuracy, not 0.
    mask = group == "C"
    assert [s.value for s in small] == pytest.approx(
        [accuracy_score(truth[mask], predicted[mask])] * 2
    )
    (empty,) = [s for s in report.unjudged if s.slice.startswith("income")]
    assert (empty.slice, empty.rows, empty.value) == ("income ≥ 100", 0, None)
    document = json.loads(json.dumps(report_dict(report)))
    assert [u["value"] for u in document["unjudged"] if u["rows"] == 0] == [None]
    assert "income ≥ 100: 0 rows, accuracy n/a" in render(report)


# ------------------------------------------------------------------ the MLflow side


def _input(name: str, context: str, digest: str, source: str = "") -> Any:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source_type = "local" if source else "code"
    spec = json.dumps({"uri": source} if source else {"tags": {}})
    return DatasetInput(
        Dataset(name, digest, source_type, spec), [InputTag("mlflow.data.context", context)]
    )


def _run(*inputs: Any) -> Any:
    return SimpleNamespace(
        info=SimpleNamespace(run_id="r1"), inputs=SimpleNamespace(dataset_inputs=list(inputs))
    )


def _evaluation_set(run: Any, evaluation: dict[str, Any], tmp_path: Path) -> tuple[Any, str, str]:
    policy = parse_policy({"evaluation": evaluation, "metrics": {"accuracy": 0.5}}, "gate.yaml")
    # No client and no server: a choice that needs neither must be made before either is used.
    return gate_policy._evaluation_set(None, "http://127.0.0.1:9", run, policy, str(tmp_path))


def test_a_dataset_input_is_chosen_by_name_whatever_order_the_store_lists(tmp_path: Path) -> None:
    import pandas as pd

    path = tmp_path / "extra.csv"
    pd.DataFrame({"x": [0.5, 1.5, 2.5], "target": [0, 1, 1]}).to_csv(path, index=False)
    digest = gate_policy._digest(pd.read_csv(path))
    inputs = [
        _input("extra", "evaluation", digest, str(path)),
        _input("extra", "validation", digest, str(path)),  # the same rows logged twice
        _input("train", "training", "0000aaaa"),
    ]
    chosen = [
        _evaluation_set(_run(*order), {"dataset": "extra"}, tmp_path)
        for order in (inputs, inputs[::-1])
    ]
    assert chosen[0][1:] == chosen[1][1:] == ("dataset extra (local)", digest)
    # The same name for different rows: refused naming both, in either order.
    other = _input("extra", "evaluation", "1111bbbb", str(path))
    for order in ([inputs[0], other], [other, inputs[0]]):
        with pytest.raises(InvalidInput) as caught:
            _evaluation_set(_run(*order), {"dataset": "extra"}, tmp_path)
        message = str(caught.value)
        assert message.startswith("gate.yaml: evaluation.dataset: run r1")
        assert digest in message and "1111bbbb" in message and "will not guess" in message


def test_two_held_out_splits_are_refused_before_either_is_fetched(tmp_path: Path) -> None:
    first = _input("iris-held-out", "evaluation", "2222cccc")
    second = _input("iris-extra", "evaluation", "3333dddd")
    for order in ((first, second), (second, first)):
        with pytest.raises(InvalidInput) as caught:
            _evaluation_set(_run(*order), {"held_out": True}, tmp_path)
        message = str(caught.value)
        assert "inputs of context 'evaluation' with different rows" in message
        assert "iris-held-out (context evaluation, digest 2222cccc)" in message
        assert "iris-extra (context evaluation, digest 3333dddd)" in message
        assert "evaluation.path" in message


def test_a_version_without_a_policy_says_so_in_a_check_that_does_not_fail(tmp_path: Path) -> None:
    found = gate_policy.prepare("http://127.0.0.1:9", None, str(tmp_path), str(tmp_path))
    assert isinstance(found, gate_policy.NoPolicy)
    check = found.check()
    assert (check.name, check.passed) == ("policy", True)
    assert "no gate.yaml" in check.detail and "only the other checks" in check.detail
    missing = gate_policy.NoPolicy("run r1 has no gate.yaml").check()
    assert missing.detail.startswith("not judged by a policy: run r1 has no gate.yaml; ")
    assert "signature, format, load-and-predict" in missing.detail
