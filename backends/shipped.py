"""Where the files the product reads at run time are: the alert rules and routes, the runbooks,
the example projects, the serving image's Dockerfile, lock and wheelhouse script.

They live once, at the repository's top level (``deploy/``, ``docs/``, ``examples/``, ...).
Run from a checkout (an editable install, the tests) they are read there; an installed wheel
carries them in the data package ``mlops_console_shipped`` beside ``backends/`` (pyproject.toml
maps the top level onto it at build time), and they are read from that copy. Either way the
files come with the code that reads them, never from the working directory.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

__all__ = ["DATA_PACKAGE", "SHIPPED", "data_root", "path", "source_tree"]

DATA_PACKAGE = "mlops_console_shipped"
# What the wheel carries, as the repository names it (pyproject.toml's package-data for
# DATA_PACKAGE says the same; tests/unit/test_shipped.py holds them together). The server
# package ships as a package of its own, beside this one.
SHIPPED = (
    "Dockerfile",
    "requirements.lock",
    "deploy",
    "docs",
    "examples",
    "scripts/build-wheelhouse.sh",
    "scripts/build-base-image.sh",
)

_CODE = Path(__file__).resolve().parents[1]  # the directory holding backends/ and server/


def _installed() -> Path:
    return _CODE / DATA_PACKAGE


def source_tree() -> Path | None:
    """The checkout these modules run from, or None in an installed wheel."""
    return None if _installed().is_dir() else _CODE


def data_root() -> Path:
    """The directory the shipped files are under: the installed copy, else the checkout."""
    installed = _installed()
    return installed if installed.is_dir() else _CODE


def path(name: str) -> Path:
    """The shipped file or folder ``name``, named as in the repository
    (``"deploy/prometheus/rules.yml"``, ``"server/requirements.txt"``)."""
    parts = PurePosixPath(name).parts
    if parts and parts[0] == "server" and ".." not in parts:
        return _CODE.joinpath(*parts)
    if ".." in parts or not any(name == e or name.startswith(e + "/") for e in SHIPPED):
        raise ValueError(f"{name!r} is not shipped with mlops-console (backends.shipped.SHIPPED)")
    return data_root().joinpath(*parts)
