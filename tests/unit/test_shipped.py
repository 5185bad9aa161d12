"""What the wheel carries: pyproject.toml's package list is the tree's, and its package data
covers every file backends/shipped.py says ships (tests/integration/test_installed_wheel.py
builds the wheel and runs it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from backends import shipped
from tests.conftest import ROOT

SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
LEFT_BEHIND = {"__pycache__", "mlruns", "mlartifacts"}  # what running things in place leaves


def _files_under(top: Path) -> set[Path]:
    if top.is_file():
        return {top}
    return {
        p
        for p in top.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and not p.name.endswith(".pyc")
        and not LEFT_BEHIND & set(p.relative_to(ROOT).parts)
        and not p.match("deploy/prometheus/targets/*")  # written at run time, not shipped
    }


def test_every_package_in_the_tree_is_listed_for_the_wheel() -> None:
    in_tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("console", "backends", "server")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    listed = set(SETUPTOOLS["packages"])
    assert in_tree - listed == set(), "packages missing from pyproject.toml: the wheel lacks them"
    assert listed - in_tree == {shipped.DATA_PACKAGE}
    assert SETUPTOOLS["package-dir"] == {shipped.DATA_PACKAGE: "."}


def test_package_data_covers_every_shipped_file() -> None:
    globs = SETUPTOOLS["package-data"][shipped.DATA_PACKAGE]
    packaged = {p for pattern in globs for p in ROOT.glob(pattern) if p.is_file()}
    for entry in shipped.SHIPPED:
        wanted = _files_under(ROOT / entry)
        assert wanted, f"{entry} is in SHIPPED but not in the repository"
        missing = sorted(str(p.relative_to(ROOT)) for p in wanted - packaged)
        assert not missing, f"shipped but matched by no package-data glob: {missing}"
    # And nothing is packaged that SHIPPED does not name (it would be unreachable by path()).
    stray = [p for p in packaged if not any(p.is_relative_to(ROOT / e) for e in shipped.SHIPPED)]
    assert not stray
    assert "requirements.txt" in SETUPTOOLS["package-data"]["server"]


def test_in_a_checkout_the_files_are_the_checkouts_own() -> None:
    assert shipped.source_tree() == ROOT
    assert shipped.data_root() == ROOT
    assert shipped.path("deploy/prometheus/rules.yml") == ROOT / "deploy/prometheus/rules.yml"
    assert shipped.path("server/requirements.txt").is_file()
    assert shipped.path("examples/iris").is_dir()


@pytest.mark.parametrize("name", ["pyproject.toml", "tests/conftest.py", "deploy/../README.md"])
def test_what_is_not_shipped_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not shipped"):
        shipped.path(name)


def test_a_runbook_url_opens_only_our_runbooks() -> None:
    from console.runbooks import local_runbook

    page = local_runbook("docs/runbooks/MlopsFeatureDrift.md")
    assert page == ROOT / "docs" / "runbooks" / "MlopsFeatureDrift.md"
    for url in ("docs/runbooks/../../pyproject.toml", "README.md", "/etc/passwd", "https://x/y"):
        assert local_runbook(url) is None, url
