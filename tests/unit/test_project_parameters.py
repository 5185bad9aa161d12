"""The train form's fields come from the project's MLproject file, as MLflow reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.errors import InvalidInput
from backends.mlflow.training import project_parameters
from backends.records import ProjectParameter

IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris"


def test_the_example_projects_parameters_in_file_order() -> None:
    params = project_parameters(IRIS)
    assert [p.name for p in params] == [
        "n_estimators", "max_depth", "seed", "test_size", "data", "reference_sample",
    ]  # fmt: skip
    assert params[0] == ProjectParameter("n_estimators", "int", "100")
    assert params[3] == ProjectParameter("test_size", "float", "0.2")
    assert params[4] == ProjectParameter("data", "string", "bundled:iris")


def test_short_form_and_required_parameters(tmp_path: Path) -> None:
    (tmp_path / "MLproject").write_text(
        "name: p\nentry_points:\n  main:\n    parameters:\n      path: path\n"
        "      alpha: {type: float}\n    command: python x.py {path} {alpha}\n"
    )
    assert project_parameters(tmp_path) == [
        ProjectParameter("path", "path", None),
        ProjectParameter("alpha", "float", None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no MLproject file"),
        ("name: [unclosed", "not valid YAML"),
        ("name: p\nentry_points:\n  other:\n    command: x\n", "no entry point 'main'"),
    ],
)
def test_what_is_wrong_with_a_project_is_named(
    tmp_path: Path, text: str | None, message: str
) -> None:
    if text is not None:
        (tmp_path / "MLproject").write_text(text)
    with pytest.raises(InvalidInput, match=message):
        project_parameters(tmp_path)
