"""Short human forms of durations, times and numbers for tables."""

from __future__ import annotations

from datetime import UTC, datetime


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``, ``3d``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def when(moment: datetime | None) -> str:
    """A local ``YYYY-MM-DD HH:MM`` (``-`` when unknown)."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "-"


def since(moment: datetime | None, now: datetime | None = None) -> str:
    """Time elapsed since ``moment``."""
    if moment is None:
        return "-"
    return duration(((now or datetime.now(UTC)) - moment).total_seconds())


def number(value: float | None, digits: int = 4) -> str:
    """A compact number (``-`` for None)."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def percent(value: float | None) -> str:
    """A ratio as a percentage."""
    return "-" if value is None else f"{value * 100:.2f}%"


def millis(seconds: float | None) -> str:
    """Seconds as milliseconds."""
    return "-" if seconds is None else f"{seconds * 1000:.1f}ms"
