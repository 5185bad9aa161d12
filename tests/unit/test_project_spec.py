"""An entry point's command line, filled in as ``mlflow run`` fills it in (mlflow's
``_project_spec``): defaults, required parameters, quoting, extras, path and uri types."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from backends.errors import InvalidInput
from backends.mlflow.project_spec import load_entry_point

IRIS = Path(__file__).resolve().parents[2] / "examples" / "iris"


def project(tmp_path: Path, params: str, command: str) -> Path:
    (tmp_path / "MLproject").write_text(
        f"name: p\nentry_points:\n  main:\n    parameters:\n{params}    command: {command}\n"
    )
    return tmp_path


def test_the_example_gets_its_defaults_and_the_values_given() -> None:
    point = load_entry_point(IRIS)
    command = point.shell_command({"n_estimators": "10"})
    assert command == (
        "python train.py --n-estimators 10 --max-depth 0 --seed 42 --test-size 0.2 "
        "--data bundled:iris --reference-sample 500"
    )
    declared, extras = point.resolved({"n_estimators": "10", "extra": "x"})
    assert (
        declared["n_estimators"] == "10" and declared["seed"] == "42" and extras == {"extra": "x"}
    )


def test_values_are_quoted_and_extras_appended(tmp_path: Path) -> None:
    point = load_entry_point(project(tmp_path, "      a: string\n", "echo {a}"))
    command = point.shell_command({"a": "two words; rm -rf /", "more stuff": "x y"})
    assert shlex.split(command) == ["echo", "two words; rm -rf /", "--more stuff", "x y"]


def test_a_required_parameter_must_be_given(tmp_path: Path) -> None:
    point = load_entry_point(project(tmp_path, "      a: {type: float}\n", "echo {a}"))
    with pytest.raises(InvalidInput, match="'a'"):
        point.shell_command({})


def test_a_path_must_exist_and_becomes_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("x\n")
    point = load_entry_point(project(tmp_path, "      p: path\n", "echo {p}"))
    assert point.shell_command({"p": "data.csv"}) == f"echo {tmp_path / 'data.csv'}"
    assert point.shell_command({"p": f"file://{tmp_path / 'data.csv'}"}).endswith("data.csv")
    with pytest.raises(InvalidInput, match="no such file"):
        point.shell_command({"p": "missing.csv"})
    with pytest.raises(InvalidInput, match="local file"):
        point.shell_command({"p": "s3://bucket/data.csv"})
    # Logged as given, as MLflow logs it (not the absolute path it ran with).
    assert point.resolved({"p": "data.csv"})[0] == {"p": "data.csv"}


def test_a_uri_needs_a_scheme(tmp_path: Path) -> None:
    point = load_entry_point(project(tmp_path, "      u: uri\n", "echo {u}"))
    assert point.shell_command({"u": "s3://b/k"}) == "echo s3://b/k"
    with pytest.raises(InvalidInput, match="takes a URI"):
        point.shell_command({"u": "just-a-name"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: p\n", "no entry point 'main'"),
        ("name: p\nentry_points:\n  main:\n    parameters: {}\n", "has no command"),
        ("entry_points: [", "not valid YAML"),
    ],
)
def test_broken_projects_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "MLproject").write_text(text)
    with pytest.raises(InvalidInput, match=message):
        load_entry_point(tmp_path)


def test_a_command_naming_an_undeclared_parameter(tmp_path: Path) -> None:
    point = load_entry_point(project(tmp_path, "      a: string\n", "echo {a} {b}"))
    with pytest.raises(InvalidInput, match="does not declare"):
        point.shell_command({"a": "1"})
