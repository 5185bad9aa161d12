"""The MLflow room: everything that talks to a tracking server and model registry.

``client`` (connect, probe, MLflow's errors as ours), ``models`` (references, resolving,
downloading a version), ``runs`` + ``run_source``/``client_source`` + ``run_index`` (listing at
any scale), ``run_filter`` (MLflow's search syntax), ``compare``, ``registry`` + ``history`` +
``alias_moves`` (aliases and their history), ``gate`` (the promotion gate), ``training`` (MLflow
Projects), ``drift_reference`` (a version's drift thresholds). Imports no other system's room.
"""
