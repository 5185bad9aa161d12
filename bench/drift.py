"""The model server's drift update against recomputing PSI and KS from scratch, same window.

A 10,000-row window of 4 and of 50 numeric features; each feature's reference is what training
writes (10 quantile bins of 20,000 training values, a 500-value sample for KS). An *update* is
what the server does per batch of inputs: ``observe`` of 100 new rows (the prediction thread)
plus ``compute`` (the background timer) over the whole window — ``DriftMonitor`` moves only the
rows that entered and left through its counts.

The KS p-value is scipy's exact count (ks_2samp's default at these sizes), about a millisecond
a feature and more as drift grows; ``server.ks`` memoises it by (n1, n2, statistic on the
lattice), which a sliding window revisits. So two figures: the steady state (after
``--warmup`` updates of the same stream, as a server is after its first minutes) and every
p-value counted afresh (the memo cleared before each update, as on a server's first update).

Peers, same run, same window: Evidently's ``DataDriftPreset`` (0.7 does not import with
pandas 3, which this venv holds, so it runs in an interpreter of its own: ``--evidently-python``,
else a venv the bench makes under ~/.cache/mlops-console/bench-evidently on first use, with
pandas 2; ``bench/evidently_peer.py`` times its ``Report.run`` on the same arrays); and scipy's
``ks_2samp`` plus numpy's PSI over the window from scratch — what ``compute`` did before. The
bench checks that ours gives scipy's figures (to 1e-12) and prints each target as met or not.

    python bench/drift.py [--window 10000] [--batch 100] [--updates 100] [--warmup 200]
                          [--evidently-python PATH | --no-evidently-venv]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from server import ks  # noqa: E402
from server.drift import DriftMonitor, DriftReference, psi  # noqa: E402

TARGET_MS = {4: 2.0, 50: 10.0}
TARGET_VS_EVIDENTLY = 300.0
PEER_SCRIPT = HERE / "evidently_peer.py"
PEER = ("evidently==0.7.*", "pandas<3")  # 0.7 does not import with pandas 3


def reference(features: int, sample: int, rng: np.random.Generator) -> DriftReference:
    """Training's drift reference for features of assorted scales and shapes."""
    specs = {}
    for j in range(features):
        train = rng.normal(j % 7, 1 + j % 3, size=20000)
        if j % 5 == 4:  # a discrete feature: ties in bins, sample and inputs
            train = train.round()
        edges = np.unique(np.quantile(train, np.linspace(0, 1, 11)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, train, side="right"), minlength=len(edges) + 1)
        specs[f"f{j}"] = {
            "edges": edges.tolist(),
            "expected": (counts / counts.sum()).tolist(),
            "sample": rng.choice(train, sample, replace=False).tolist(),
        }
    return DriftReference.from_dict({"format": "mlops-drift-reference/1", "features": specs})


def rows(features: int, count: int, rng: np.random.Generator) -> list[list[float]]:
    """Live inputs from the training distribution (the steady state the server mostly sees)."""
    j = np.arange(features)
    block = rng.normal(j % 7, 1 + j % 3, size=(count, features))
    block[:, j % 5 == 4] = block[:, j % 5 == 4].round()
    return block.tolist()  # type: ignore[no-any-return]


def from_scratch(
    ref: DriftReference, names: list[str], window: np.ndarray
) -> list[tuple[float, ...]]:
    """The peer: numpy PSI and scipy's ks_2samp over the window, per feature."""
    from scipy.stats import ks_2samp

    out: list[tuple[float, ...]] = []
    for j, name in enumerate(names):
        values = window[:, j]
        values = values[np.isfinite(values)]
        spec = ref.features[name]
        result = ks_2samp(values, spec.sample)
        out.append(
            (psi(spec.expected, spec.edges, values), float(result.statistic), float(result.pvalue))
        )
    return out


def evidently_seconds(
    names: list[str], window: np.ndarray, rng: np.random.Generator, python: str | None, why: str
) -> tuple[float | None, str]:
    """Evidently's DataDriftPreset over the window against 10,000 reference rows (the median
    of 3 runs after one untimed) in ``python`` (see ``evidently_python``), or why not."""
    if python is None:
        return None, why
    return _evidently_apart(python, window, np.asarray(rows(len(names), len(window), rng)))


def _evidently_apart(
    python: str, window: np.ndarray, reference_rows: np.ndarray
) -> tuple[float | None, str]:
    """The same Report in ``python`` (bench/evidently_peer.py), on the same arrays."""
    with tempfile.TemporaryDirectory(prefix="mlops-bench-evidently-") as tmp:
        current_path, reference_path = Path(tmp, "current.npy"), Path(tmp, "reference.npy")
        np.save(current_path, window)
        np.save(reference_path, reference_rows)
        try:
            done = subprocess.run(
                [python, str(PEER_SCRIPT), str(current_path), str(reference_path), "3"],
                capture_output=True,
                text=True,
                timeout=1800,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"in {python}: {type(exc).__name__}: {exc}"[:200]
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return None, f"in {python}: {tail}"
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if answer.get("columns") != window.shape[1]:  # it must have judged every feature
        return None, f"in {python}: Evidently judged {answer.get('columns')} columns"
    note = (
        f"DataDriftPreset (Evidently {answer['version']}, pandas {answer['pandas']}, in {python})"
    )
    return statistics.median(answer["seconds"]), note


def evidently_python(args: argparse.Namespace) -> tuple[str | None, str]:
    """An interpreter where Evidently 0.7 imports, or None and why: --evidently-python, else
    this one where it imports here, else a venv of its own under the cache directory (made on
    first use: `pip install 'evidently==0.7.*' 'pandas<3'`, about a minute with PyPI
    reachable), unless --no-evidently-venv."""
    if args.evidently_python:
        return str(args.evidently_python), ""
    try:
        import evidently.presets  # noqa: F401

        return sys.executable, ""
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
    if args.no_evidently_venv:
        return None, why
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "mlops-console" / "bench-evidently"
    python = venv / "bin" / "python"
    if python.exists():
        works = subprocess.run([str(python), "-c", "import evidently.presets"], capture_output=True)
        if works.returncode == 0:
            return str(python), ""
        shutil.rmtree(venv, ignore_errors=True)  # an install that was cut short: again
    print(f"  making a venv for Evidently 0.7 with pandas 2 (its peer): {venv}", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PEER],
            check=True,
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        print(f"  could not install Evidently: {str(detail).strip().splitlines()[-1:]}")
        shutil.rmtree(venv, ignore_errors=True)
        return None, why
    return str(python), ""


def bench(features: int, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    ref = reference(features, args.reference_sample, rng)
    names = list(ref.features)
    monitor = DriftMonitor(ref, names, window=args.window)
    ks._exact.cache_clear()

    monitor.observe(rows(features, args.window, rng))
    started = time.perf_counter()
    monitor.compute()
    first = time.perf_counter() - started  # the whole window counted, every p-value afresh

    batches = [rows(features, args.batch, rng) for _ in range(args.warmup + 2 * args.updates)]

    def update(batch: list[list[float]]) -> float:
        started = time.perf_counter()
        monitor.observe(batch)
        monitor.compute()
        return time.perf_counter() - started

    for batch in batches[: args.warmup]:
        update(batch)
    misses = ks._exact.cache_info().misses
    steady = [update(b) for b in batches[args.warmup : args.warmup + args.updates]]
    misses = ks._exact.cache_info().misses - misses
    afresh = []
    for batch in batches[args.warmup + args.updates :]:
        ks._exact.cache_clear()
        afresh.append(update(batch))

    # The same window, from scratch: the peer's time and its figures against ours.
    window = monitor._buffer[: monitor.rows_in_window].copy()
    ours = monitor.compute(force=True) or []
    peer_times, peer = [], []
    for _ in range(args.peer_repeats):
        started = time.perf_counter()
        peer = from_scratch(ref, names, window)
        peer_times.append(time.perf_counter() - started)
    gap = max(
        max(abs(a - b) for a, b in zip((r.psi, r.ks, r.ks_pvalue), want, strict=True))
        for r, want in zip(ours, peer, strict=True)
    )
    evidently, evidently_note = evidently_seconds(names, window, rng, *args.evidently)
    return {
        "first": first,
        "steady": statistics.median(steady),
        "steady_p90": float(np.quantile(steady, 0.9)),
        "misses": misses,
        "afresh": statistics.median(afresh),
        "peer": statistics.median(peer_times),
        "gap": gap,
        "evidently": evidently,
        "evidently_note": evidently_note,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--window", type=int, default=10000)
    p.add_argument("--batch", type=int, default=100, help="new rows per update")
    p.add_argument("--reference-sample", type=int, default=500, help="training's default")
    p.add_argument("--updates", type=int, default=100, help="measured updates per figure")
    p.add_argument("--warmup", type=int, default=200, help="updates before the steady state")
    p.add_argument("--peer-repeats", type=int, default=3)
    p.add_argument("--features", type=int, nargs="+", default=[4, 50])
    p.add_argument(
        "--evidently-python", type=Path, help="an interpreter where Evidently 0.7 imports"
    )
    p.add_argument(
        "--no-evidently-venv",
        action="store_true",
        help="do not make a venv for Evidently when it does not import here",
    )
    args = p.parse_args()
    rng = np.random.default_rng(2026)
    print(
        f"drift update: {args.window:,}-row window, {args.batch} new rows per update, "
        f"10 bins, {args.reference_sample}-value KS sample; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    args.evidently = evidently_python(args)
    if not ks.available():
        print("  note: this scipy lacks the exact count server.ks reaches; ks_2samp answers")
    all_met = True
    for features in args.features:
        r = bench(features, args, rng)
        target = TARGET_MS.get(features)
        steady_ms, afresh_ms = r["steady"] * 1e3, r["afresh"] * 1e3
        same = r["gap"] <= 1e-12
        print(f"\n{features} features:")
        print(
            f"  ours, steady state: {steady_ms:.2f} ms per update (p90 {r['steady_p90'] * 1e3:.2f}"
            f" ms; {r['misses']} p-values counted in {args.updates} updates)"
        )
        print(f"  ours, every p-value afresh: {afresh_ms:.2f} ms per update")
        print(f"  ours, first compute (whole window counted): {r['first'] * 1e3:.1f} ms")
        print(
            f"  peer, scipy ks_2samp + numpy PSI from scratch: {r['peer'] * 1e3:.1f} ms "
            f"-> {r['peer'] / r['steady']:.0f}x steady, {r['peer'] / r['afresh']:.1f}x afresh"
        )
        print(
            f"  same figures as the peer: {'yes' if same else 'NO'} "
            f"(largest gap in PSI, KS, p-value: {r['gap']:.1e})"
        )
        if r["evidently"] is not None:
            ratio = r["evidently"] / r["steady"]
            print(f"  peer, Evidently {r['evidently_note']}: {r['evidently'] * 1e3:.0f} ms")
            print(
                f"  target >= {TARGET_VS_EVIDENTLY:.0f}x Evidently: {ratio:.0f}x "
                f"{'met' if ratio >= TARGET_VS_EVIDENTLY else 'NOT met'}"
            )
            all_met &= ratio >= TARGET_VS_EVIDENTLY
        else:
            print(
                f"  Evidently cannot run here ({r['evidently_note']}): target >= "
                f"{TARGET_VS_EVIDENTLY:.0f}x Evidently not measured; the scipy peer stands in"
            )
        if target is not None:
            for label, ms in (("steady state", steady_ms), ("every p-value afresh", afresh_ms)):
                met = ms <= target
                print(f"  target <= {target:g} ms, {label}: {'met' if met else 'NOT met'}")
            all_met &= steady_ms <= target
        all_met &= same
        if not same:
            raise SystemExit("drift figures differ from scipy's: fix before measuring")
    print(f"\ntargets (steady state, same figures): {'met' if all_met else 'NOT all met'}")


if __name__ == "__main__":
    main()
