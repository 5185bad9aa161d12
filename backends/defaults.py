"""The defaults every part agrees on, in one place: aliases, addresses, experiment, drift."""

from __future__ import annotations

__all__ = [
    "ALL_ADDRESSES",
    "CHALLENGER",
    "CHAMPION",
    "DEFAULT_EXPERIMENTS",
    "DEFAULT_HOST",
    "DEFAULT_KS_PVALUE",
    "DEFAULT_PORT",
    "DEFAULT_PSI",
    "DEFAULT_TRACKING_URI",
    "ENGINES",
]

CHAMPION = "champion"  # the alias that serves production
CHALLENGER = "challenger"  # the candidate waiting for a person

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # the embedded store, in the working directory
# The experiment the runs screen opens when MLFLOW_EXPERIMENT_NAME names none: the example
# project's, else MLflow's own default.
DEFAULT_EXPERIMENTS = ("iris", "Default")

# Where a context's deployments live: one engine's containers, or a swarm's services.
ENGINES = ("docker", "swarm")

DEFAULT_HOST = "127.0.0.1"  # a deployment's router address, unless asked to widen it
# A bind to one of these listens on every address of its host (reached from this one at the
# host's own address, or at loopback on this host).
ALL_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORT = 8080

# Drift thresholds for a drift reference that names none (server/drift.py uses the same).
DEFAULT_PSI = 0.2  # PSI above this is drift
DEFAULT_KS_PVALUE = 0.05  # a KS p-value below this is drift
