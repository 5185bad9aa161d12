"""Runbooks named by an alert's ``runbook_url``: a path in our docs opens in the console."""

from __future__ import annotations

from pathlib import Path

from backends import shipped

MAX_RUNBOOK = 200_000  # characters: a runbook is a page, not a data file


def local_runbook(url: str) -> Path | None:
    """The file a relative ``runbook_url`` names (under our docs/runbooks, the checkout's or the
    installed wheel's), if it is there."""
    if not url or "://" in url:
        return None
    runbooks = shipped.path("docs/runbooks").resolve()
    wanted = (shipped.data_root() / url).resolve()  # relative to the repository's top level
    if runbooks not in wanted.parents or not wanted.is_file():
        return None  # only our runbooks: an annotation is not a licence to read any file
    return wanted


def runbook_text(url: str) -> str:
    """The runbook's text, or a line saying where it is when it is not a local page."""
    path = local_runbook(url)
    if path is None:
        return f"Runbook: {url}" if url else "This alert names no runbook (runbook_url)."
    return path.read_text(errors="replace")[:MAX_RUNBOOK]
