"""Layering and start-up cost: the CLI imports nothing heavy, backends never import the UI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("mlflow", "docker", "textual", "sklearn", "pandas", "prometheus_api_client")


@pytest.mark.parametrize("module", ["console.cli.main", "console.cli", "console.config"])
def test_importing_the_cli_imports_nothing_heavy(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing {module} pulled in: {out.stdout.strip()}"


def test_mlops_help_imports_nothing_heavy() -> None:
    # `mlops --help` runs the whole Typer app; it must not touch a backend library.
    code = (
        "import sys\n"
        "from console.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout
    assert out.stdout.strip().endswith("HEAVY="), out.stdout


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint_imports)], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 9 kept, 0 broken." in out.stdout


def test_import_linter_catches_a_backend_importing_textual(tmp_path: Path) -> None:
    # The contract test above is only worth something if a violation really breaks it.
    import shutil

    for pkg in ("console", "backends", "server"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "backends" / "leak.py").write_text("import textual\n")
    lint_imports = Path(sys.executable).parent / "lint-imports"
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([str(lint_imports)], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode != 0
    assert "backends.leak -> textual" in out.stdout
