"""The Docker room: the engine, serving images, and deployments as containers.

``engine`` (connect, the engine's errors as ours), ``images`` (build a version's serving image
from a model directory, find and list them), ``containers`` (read deployments back, logs,
removal), ``switch`` (start a version and switch the router to it with no failed request).
Imports no other system's room: what a version is comes in as our records.
"""
