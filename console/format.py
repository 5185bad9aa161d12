"""Short human forms of durations, times, numbers and versions: one module for CLI and TUI."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def duration(seconds: float | None, *, tenths: bool = False) -> str:
    """``42s`` (``42.0s`` with ``tenths``), ``3m05s``, ``2h10m``, ``3d``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s" if tenths else f"{int(seconds)}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 172800 or tenths:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def span(seconds: float) -> str:
    """A window or interval as the operator typed it: ``1m``, ``90s``, ``2.5s``."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def when(moment: datetime | None) -> str:
    """A local ``YYYY-MM-DD HH:MM`` (``-`` when unknown)."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "-"


def when_utc(moment: datetime, *, seconds: bool = False) -> str:
    """A UTC ``YYYY-MM-DD HH:MM[:SS]Z`` (the registry's history is read across time zones)."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + "Z"
    )


def since(moment: datetime | None, now: datetime | None = None) -> str:
    """Time elapsed since ``moment``."""
    if moment is None:
        return "-"
    return duration(((now or datetime.now(UTC)) - moment).total_seconds())


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``14:02:11 (3 min ago)``: a local time and how long ago it was; ``never`` when None."""
    if moment is None:
        return "never"
    seconds = max(0.0, ((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 60:
        elapsed = f"{seconds:.1f} s ago" if seconds < 10 else f"{seconds:.0f} s ago"
    elif seconds < 3600:
        elapsed = f"{seconds / 60:.0f} min ago"
    elif seconds < 86400:
        elapsed = f"{seconds / 3600:.1f} h ago"
    else:
        elapsed = f"{seconds / 86400:.1f} d ago"
    return f"{moment.astimezone():%H:%M:%S} ({elapsed})"


def number(value: float | None, digits: int = 4) -> str:
    """A compact number (``-`` for None)."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def metric(value: float | None) -> str:
    """A metric value in a table column: four decimals, or four significant digits when tiny
    or huge (``-`` for None; NaN and infinities as such)."""
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}" if abs(value) >= 1e4 or (value and abs(value) < 1e-3) else f"{value:.4f}"


def percent(value: float | None, digits: int = 2) -> str:
    """A ratio as a percentage."""
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def quality(figures: dict[str, float], labelled: float | None, coverage: float | None) -> str:
    """Realized quality from labels: "acc 93.0% n=412 41%" (accuracy, labelled rows in the
    window, label coverage), "mae 0.12 n=…" for a regressor, "-" before any label."""
    if not figures:
        return "-"
    if "accuracy" in figures:
        head = f"acc {percent(figures['accuracy'], 1)}"
    elif "mae" in figures:
        head = f"mae {number(figures['mae'], 3)}"
    else:
        name, value = next(iter(figures.items()))
        head = f"{name} {number(value, 3)}"
    parts = [head]
    if labelled is not None:
        parts.append(f"n={labelled:.0f}")
    if coverage is not None:
        parts.append(percent(coverage, 0))
    return " ".join(parts)


def millis(seconds: float | None) -> str:
    """Seconds as milliseconds."""
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"


def latency(seconds: float | None) -> str:
    """A latency: milliseconds below a second, else seconds."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


def version(number: int | None) -> str:
    """A version number as a table cell (``-`` when there is none)."""
    return "-" if number is None else str(number)


def aliases(held: dict[str, int]) -> str:
    """``challenger=4 champion=3`` (``-`` when none)."""
    return " ".join(f"{a}={v}" for a, v in sorted(held.items())) or "-"


def pairs(values: dict[str, str], *, limit: int) -> str:
    """``k=v k=v ...``: the first ``limit`` pairs by key (``-`` when none)."""
    items = [f"{k}={v}" for k, v in sorted(values.items())]
    if not items:
        return "-"
    return " ".join(items[:limit]) + (" ..." if len(items) > limit else "")
