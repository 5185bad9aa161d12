"""The `mlops` command line: one Typer app per resource, joined in ``main``.

Importing this package must stay cheap: no mlflow, docker or textual at import time.
"""
