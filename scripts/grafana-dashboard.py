#!/usr/bin/env python3
"""Writes deploy/grafana/mlops.json, the Grafana dashboard of what a served model exports
(latency quantiles, error ratios, batch sizes, drift per feature, quality from labels, alerts,
the process). One source of truth for the panels; the JSON is checked in so that it imports
as is (Dashboards → New → Import). tests/integration/test_grafana_dashboard.py runs every
expression against a real Prometheus scraping a served model."""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "mlops.json"
SEL = 'deployment=~"$deployment"'
RATE = "$__rate_interval"


def quantiles(metric: str, by: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{SEL}}}[{RATE}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def ratio(status: str) -> str:
    # "or ... * 0": a ratio of 0 while there is traffic and no such answer, not "no data".
    by = "deployment, version"
    bad = f'sum by ({by}) (rate(mlops_requests_total{{{SEL}, status=~"{status}"}}[{RATE}]))'
    all_ = f"sum by ({by}) (rate(mlops_requests_total{{{SEL}}}[{RATE}]))"
    return f"({bad} or {all_} * 0) / {all_}"


PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    # (title, unit, [(expr, legend)])
    (
        "Requests per second",
        "reqps",
        [
            (
                f"sum by (deployment, version) (rate(mlops_requests_total{{{SEL}}}[{RATE}]))",
                "{{deployment}} v{{version}}",
            )
        ],
    ),
    ("Latency", "s", quantiles("mlops_request_duration_seconds", "deployment")),
    (
        "Error ratios",
        "percentunit",
        [
            (ratio("5.."), "5xx {{deployment}} v{{version}}"),
            (ratio("4.."), "4xx {{deployment}} v{{version}}"),
        ],
    ),
    (
        "Prediction errors by type",
        "reqps",
        [
            (
                f"sum by (deployment, type) (rate(mlops_prediction_errors_total{{{SEL}}}[{RATE}]))",
                "{{deployment}} {{type}}",
            )
        ],
    ),
    ("Rows per model call (micro-batching)", "short", quantiles("mlops_batch_size", "deployment")),
    (
        "Drift: PSI per feature (0.2 alerts)",
        "short",
        [
            (
                f"max by (deployment, feature) (mlops_feature_psi{{{SEL}}})",
                "{{deployment}} {{feature}}",
            )
        ],
    ),
    (
        "Drift: KS p-value per feature (0.05)",
        "short",
        [
            (
                f"min by (deployment, feature) (mlops_feature_ks_pvalue{{{SEL}}})",
                "{{deployment}} {{feature}}",
            )
        ],
    ),
    (
        "Accuracy from labels, per version that answered",
        "percentunit",
        [
            (
                "max by (deployment, model_version) "
                f'(mlops_model_quality{{{SEL}, metric="accuracy"}})',
                "{{deployment}} v{{model_version}} (labels)",
            ),
            (
                "max by (deployment, model_version) "
                f'(mlops_model_validation{{{SEL}, metric="accuracy"}})',
                "{{deployment}} v{{model_version}} (held out at training)",
            ),
        ],
    ),
    (
        "Label coverage",
        "percentunit",
        [
            (
                f"max by (deployment, model_version) (mlops_label_coverage_ratio{{{SEL}}})",
                "{{deployment}} v{{model_version}}",
            )
        ],
    ),
    (
        "Alerts",
        "short",
        [
            (
                "sum by (alertname, alertstate, deployment) "
                f'(ALERTS{{alertname=~"Mlops.*", {SEL}}})',
                "{{alertname}} {{alertstate}} {{deployment}}",
            )
        ],
    ),
    (
        "Up",
        "short",
        [(f'up{{job="mlops", {SEL}}}', "{{deployment}} v{{version}} {{instance}}")],
    ),
    (
        "Server memory (resident)",
        "bytes",
        [(f"process_resident_memory_bytes{{{SEL}}}", "{{deployment}} v{{version}}")],
    ),
]


def dashboard() -> dict[str, object]:
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(65 + j), "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(targets)
                ],
            }
        )
    return {
        "title": "mlops-console: served models",
        "uid": "mlops-console",
        "tags": ["mlops-console"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                },
                {
                    "name": "deployment",
                    "type": "query",
                    "label": "Deployment",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {
                        "query": "label_values(mlops_model_info, deployment)",
                        "refId": "deployments",
                    },
                    "definition": "label_values(mlops_model_info, deployment)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".+",
                    "refresh": 2,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT} ({len(PANELS)} panels)")
