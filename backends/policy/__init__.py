"""A promotion gate's policy (``gate.yaml``) and its evaluation on held-out data.

Pure: numpy and scipy over plain arrays, no SDK. ``backends.mlflow.gate_policy`` fetches the
policy, the evaluation set and the predictions; this package reads and judges them.
"""

from backends.policy.evaluate import EvaluationData, evaluate, group_values
from backends.policy.report import from_dict, render, report_dict
from backends.policy.spec import Policy, load_policy, parse_policy

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
