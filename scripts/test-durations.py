"""Write tests/durations.json from a JUnit XML report of a full run.

    .venv/bin/pytest -n 4 --dist loadgroup --no-loadscope-reorder --junitxml=/tmp/run.xml
    .venv/bin/python scripts/test-durations.py /tmp/run.xml

tests/conftest.py starts the costliest units of work first from these figures (a test not in
the file is guessed from its marks). They only order the run: a stale figure costs minutes of
tail, never a result. Tests under a second are left out.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "durations.json"


def main(report: str) -> None:
    durations: dict[str, float] = {}
    for case in ET.parse(report).iter("testcase"):
        seconds = float(case.get("time") or 0)
        if seconds < 1.0:
            continue
        module = (case.get("classname") or "").replace(".", "/") + ".py"
        name = (case.get("name") or "").split("@", 1)[0]  # loadgroup's suffix
        durations[f"{module}::{name}"] = round(seconds, 1)
    OUT.write_text(json.dumps(dict(sorted(durations.items())), indent=1) + "\n")
    print(f"{len(durations)} tests, {sum(durations.values()):.0f} s, written to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
