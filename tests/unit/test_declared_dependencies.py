"""Every package the product imports is one it declares: an import that only works because
another dependency happens to pull its package in breaks the day that one stops (requests,
starlette and skops were such, reached through MLflow, docker-py and FastAPI)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from tests.conftest import ROOT

PACKAGES = ("console", "backends", "server")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_modules() -> dict[str, str]:
    """Top-level module → the first file that imports it (function-level imports included:
    the lazy ones are imports all the same)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        _normalise(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])
        for requirement in project["dependencies"]
    }


def test_every_third_party_import_is_a_declared_dependency() -> None:
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    undeclared = []
    for module, where in sorted(_imported_modules().items()):
        if module in sys.stdlib_module_names or module in PACKAGES:
            continue
        providers = {_normalise(d) for d in distributions.get(module, [])}
        assert providers, f"{module} (imported in {where}) is installed by no distribution"
        if not providers & declared:
            undeclared.append(f"{module} ({where}; from {', '.join(sorted(providers))})")
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)


def test_the_check_sees_lazy_imports() -> None:
    """The walk finds the imports made inside functions (the check above is not vacuous)."""
    imported = _imported_modules()
    assert "requests" in imported and "skops" in imported and "mlflow" in imported
