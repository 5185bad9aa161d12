"""The canary release's analysis core: pure, with no Docker, no HTTP and no clock.

``checks`` (the ``--check`` expressions and their verdicts), ``figures`` (a version's figures
over an interval, from two scrapes of its /metrics, or as PromQL against Prometheus) and
``analysis`` (the plan, the persisted state and the decision at each evaluation).
"""
