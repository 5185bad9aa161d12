"""mlops-console: a terminal operations console for ML in production."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlops-console")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
