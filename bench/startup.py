"""Start-up cost of the CLI: `mlops --help` against the named peer `mlflow --help`.

Both are run as fresh processes the same number of times in this run; the script prints the
median wall time of each and their ratio. Target: `mlops --help` under 0.3 s.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPEAT = 7


def median_seconds(cmd: list[str]) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    ours = median_seconds([str(BIN / "mlops"), "--help"])
    peer = median_seconds([str(BIN / "mlflow"), "--help"])
    print(f"mlops --help   median {ours * 1000:7.1f} ms  (target < 300 ms)")
    print(f"mlflow --help  median {peer * 1000:7.1f} ms  (peer)")
    print(f"ratio peer/ours: {peer / ours:.1f}x faster")
    return 0 if ours < 0.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
