"""Our own frozen records: the only types the console sees from a backend.

Add a record here when a backend starts returning it; keep fields plain (str, int, float,
datetime, tuples, dicts of those) so `--json` output and the UI need no SDK knowledge.
"""

from __future__ import annotations
