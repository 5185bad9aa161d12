"""The promotion gate's pure logic: requirement parsing, metric checks, signature comparison."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from backends.errors import InvalidInput
from backends.mlflow.gate import (
    Requirement,
    check_requirement,
    compare_inputs,
    parse_requirement,
    predict_check,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accuracy>=0.9", Requirement("accuracy", ">=", 0.9)),
        ("f1 > 0.5", Requirement("f1", ">", 0.5)),
        ("loss<=1e-3", Requirement("loss", "<=", 0.001)),
        ("latency_p99 < 120", Requirement("latency_p99", "<", 120.0)),
        ("rows=150", Requirement("rows", "==", 150.0)),
        ("rows==150", Requirement("rows", "==", 150.0)),
        ("drift != 1", Requirement("drift", "!=", 1.0)),
        ("val/accuracy>=0.8", Requirement("val/accuracy", ">=", 0.8)),
    ],
)
def test_parse_requirement(text: str, expected: Requirement) -> None:
    assert parse_requirement(text) == expected


@pytest.mark.parametrize("text", ["accuracy", "accuracy>=", ">=0.9", "accuracy>=high", "a>>1", ""])
def test_bad_requirements_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput, match="bad requirement"):
        parse_requirement(text)


def test_requirement_prints_as_typed() -> None:
    assert str(parse_requirement("accuracy >= 0.90")) == "accuracy>=0.9"


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        ("accuracy>=0.9", True),
        ("accuracy>=0.95", False),
        ("accuracy>0.92", False),
        ("accuracy<1", True),
        ("accuracy==0.92", True),
        ("accuracy!=0.92", False),
    ],
)
def test_check_requirement(text: str, passed: bool) -> None:
    check = check_requirement(parse_requirement(text), {"accuracy": 0.92, "f1": 0.9})
    assert check.passed is passed
    assert check.name == f"require {parse_requirement(text)}"
    assert check.detail == "accuracy = 0.92"


def test_missing_metric_fails_and_lists_the_known_ones() -> None:
    check = check_requirement(parse_requirement("recall>=0.5"), {"f1": 0.9, "accuracy": 0.9})
    assert not check.passed
    assert "no metric 'recall'" in check.detail and "(accuracy, f1)" in check.detail


def col(name: str, kind: str = "double") -> dict[str, object]:
    return {"type": kind, "name": name, "required": True}


IRIS = [col("sepal_length"), col("sepal_width"), col("petal_length"), col("petal_width")]


def test_same_columns_in_another_order_are_compatible() -> None:
    check = compare_inputs(IRIS, list(reversed(IRIS)), current_version=3)
    assert check.passed and "same 4 input columns" in check.detail and "version 3" in check.detail


def test_signature_differences_are_named() -> None:
    candidate = [col("sepal_length", "string"), col("sepal_width"), col("petal_length"), col("x")]
    check = compare_inputs(IRIS, candidate, current_version=2)
    assert not check.passed
    assert "differ from version 2" in check.detail
    assert "missing petal_width (double)" in check.detail
    assert "extra x (double)" in check.detail
    assert "sepal_length: double -> string" in check.detail


def test_tensor_and_unnamed_inputs_compare_by_position_and_spec() -> None:
    tensor = [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]
    other = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]
    assert compare_inputs(tensor, tensor, 1).passed
    check = compare_inputs(tensor, other, 1)
    assert not check.passed and "#0: tensor(float64, [-1, 4]) -> tensor(float32" in check.detail


def test_missing_signatures() -> None:
    assert not compare_inputs(IRIS, None, 1).passed  # the candidate must declare its inputs
    unknown = compare_inputs(None, IRIS, 1)  # the holder predates signatures: nothing to compare
    assert unknown.passed and "no signature" in unknown.detail


class FakeModel:
    """Stands in for a loaded pyfunc model: ``predict_check`` only calls these two members."""

    def __init__(self, example: Any, fail: bool = False) -> None:
        self.input_example, self.fail = example, fail

    def predict(self, data: Any) -> list[int]:
        if self.fail:
            raise ValueError("Input X contains NaN.\nsee the docs")
        return [0] * len(data)


def pyfunc(model: FakeModel | None) -> Any:
    def load_model(path: str) -> FakeModel:
        if model is None:
            raise OSError(f"No such file: {path}/MLmodel")
        return model

    return SimpleNamespace(load_model=load_model)


def test_predict_check_passes_and_counts_rows() -> None:
    check = predict_check(pyfunc(FakeModel([[1, 2], [3, 4]])), "/m")
    assert check.passed and check.detail == "loads and predicts 2 rows on its input example"


@pytest.mark.parametrize(
    ("model", "detail"),
    [
        (None, "the model does not load: OSError: No such file: /m/MLmodel"),
        (FakeModel(None), "the model has no input example to predict on"),
        (
            FakeModel([[1]], fail=True),
            "predict on its input example failed: ValueError: Input X contains NaN. see the docs",
        ),
    ],
)
def test_predict_check_failures_say_why(model: FakeModel | None, detail: str) -> None:
    check = predict_check(pyfunc(model), "/m")
    assert not check.passed and check.detail == detail


def test_at_most_two_check_processes_run_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from backends.mlflow import gate

    running, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()

    def child(path: str, timeout: float | None, *rows_and_out: str | None) -> gate.GateCheck:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(10)
        with lock:
            running -= 1
        return gate.GateCheck("load-and-predict", True, path)

    monkeypatch.setattr(gate, "_predict_in_child", child)
    threads = [
        threading.Thread(target=gate.isolated_predict_check, args=(f"m{i}",)) for i in range(6)
    ]
    for t in threads:
        t.start()
    while True:  # two are inside, the rest queue behind them
        with lock:
            if running >= 2:
                break
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)
    release.set()
    for t in threads:
        t.join(10)
    assert peak == 2


@pytest.mark.parametrize(("value", "expected"), [("3", 3), ("0", 1), ("many", 2), ("", 2)])
def test_gate_parallel_setting(monkeypatch: pytest.MonkeyPatch, value: str, expected: int) -> None:
    from backends.mlflow import gate

    monkeypatch.setenv("MLOPS_GATE_PARALLEL", value)
    assert gate._parallel() == expected
