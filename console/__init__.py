"""mlops-console: a terminal operations console for ML in production."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # Resolved on first use: package metadata costs ~40 ms, paid on every launch otherwise.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("mlops-console")
        except PackageNotFoundError:  # running from a source tree without an install
            return "0.0.0+unknown"
    raise AttributeError(f"module 'console' has no attribute {name!r}")
