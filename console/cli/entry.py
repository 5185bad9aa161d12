"""The `mlops` console script: straight to the app when called bare, else the Typer CLI.

`mlops` with no arguments is how operators open the console, and first paint is the thing they
feel; importing every command module (Typer, rich help, each resource) costs ~0.2 s before a
single cell is drawn, so the bare call skips it.
"""

from __future__ import annotations

import sys


def run() -> None:
    """Console-script entry point."""
    if len(sys.argv) == 1:
        from console.app import MlopsApp
        from console.config import Settings

        MlopsApp(Settings.from_env()).run()
        return
    from console.cli.main import app

    app()
