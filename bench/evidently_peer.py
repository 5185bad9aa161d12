"""Evidently's DataDriftPreset timed on arrays bench/drift.py saved, in an interpreter where
Evidently imports (0.7 does not with pandas 3, which this project's own venv holds; where it
does, bench/drift.py runs this with its own interpreter: one way of timing it either way).

    PYTHON bench/evidently_peer.py CURRENT.npy REFERENCE.npy REPEATS

Prints one JSON line: {"seconds": [...], "version": "0.7.x", "pandas": "2.x", "columns": N}
(how many columns the preset judged). Only
``Report.run`` is timed, after one run that is not (imports and first-use work are Evidently's
start, not its update), so it compares with our update as a server repeats it.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    import numpy as np
    import pandas as pd
    from evidently import Report
    from evidently import __version__ as version
    from evidently.presets import DataDriftPreset

    current_path, reference_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    current_values, reference_values = np.load(current_path), np.load(reference_path)
    names = [f"f{j}" for j in range(current_values.shape[1])]
    current = pd.DataFrame(current_values, columns=names)
    reference = pd.DataFrame(reference_values, columns=names)
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
        seconds.append(time.perf_counter() - started)
    judged = sum(1 for m in snapshot.dict().get("metrics", []) if "ValueDrift" in str(m))
    answer = {"seconds": seconds, "version": version, "pandas": pd.__version__, "columns": judged}
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
