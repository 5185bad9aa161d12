"""The gate's load-and-predict, in a process of its own: `python -m backends.mlflow.gate_child
MODEL_DIR` prints the check as JSON. A candidate model (a pickle runs code as it loads) never
runs inside the operator's process, and sees no Docker socket address or tracking credentials:
its parent gives it a bare environment."""

from __future__ import annotations

import json
import sys


def main() -> None:
    import mlflow.pyfunc

    from backends.mlflow.gate import predict_check

    check = predict_check(mlflow.pyfunc, sys.argv[1])
    print(json.dumps({"passed": check.passed, "detail": check.detail}))


if __name__ == "__main__":
    main()
