"""A promotion gate's policy (``gate.yaml``) and its evaluation on held-out data.

Pure: numpy and scipy over plain arrays, no SDK. ``backends.mlflow.gate_policy`` fetches the
policy, the evaluation set and the predictions; this package reads and judges them.

Names are loaded on first use: `mlops train` reads a policy (``spec``, plain Python) before
every training, and must not pay for numpy and scipy, which only judging needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backends.policy.judging import EvaluationData, evaluate, group_values
    from backends.policy.report import from_dict, render, report_dict
    from backends.policy.spec import Policy, load_policy, parse_policy

_WHERE = {
    "EvaluationData": "judging",
    "evaluate": "judging",
    "group_values": "judging",
    "from_dict": "report",
    "render": "report",
    "report_dict": "report",
    "Policy": "spec",
    "load_policy": "spec",
    "parse_policy": "spec",
}

__all__ = [
    "EvaluationData",
    "Policy",
    "evaluate",
    "from_dict",
    "group_values",
    "load_policy",
    "parse_policy",
    "render",
    "report_dict",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
