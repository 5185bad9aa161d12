"""Adapters to the outside world (MLflow, Docker, Prometheus).

Everything here returns our own records (``backends.records``) and raises ``backends.errors``;
no SDK object crosses this boundary, and nothing here imports textual or the console.
"""
