"""What the CLI and the console both run, across systems: each operation a plan (a record the
operator is shown) and an apply of that plan.

``handles`` (one handle per system per operation), ``build``, ``deploy`` (deploy, take down),
``rollback``, ``retrain`` + ``retrain_steps``, ``targets`` (Prometheus' targets from the engine),
``quickstart`` + ``background``. The only package that may use every system's room.
"""
