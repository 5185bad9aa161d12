"""The `mlops` console script: straight to the app when called bare, else the Typer CLI.

`mlops` with no arguments is how operators open the console, and first paint is the thing they
feel; importing every command module (Typer, rich help, each resource) costs ~0.2 s before a
single cell is drawn, so the bare call skips it. A shell asking for completions also calls
`mlops` bare (with ``_MLOPS_COMPLETE`` set): that call goes to the Typer app, never the console.
"""

from __future__ import annotations

import os
import sys


def run() -> None:
    """Console-script entry point."""
    sys.argv[1:] = context_first(sys.argv[1:])
    if len(sys.argv) == 1 and not completing():
        from backends.errors import BackendError
        from console.app import MlopsApp
        from console.config import Settings

        try:
            settings = Settings.load()
        except BackendError as exc:  # a broken config file: one line and exit 2, as the CLI
            sys.stderr.write(f"error: {exc.title}: {exc.message}\n")
            raise SystemExit(2) from None
        MlopsApp(settings).run()
        return
    from console.cli.main import app

    app()


def context_first(args: list[str]) -> list[str]:
    """``--context NAME`` may come anywhere on the line, as kubectl's does
    (`mlops models list --context prod`): move it to the root, where the option is."""
    found: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--context" and i + 1 < len(args):
            found = [arg, args[i + 1]]
            i += 2
            continue
        if arg.startswith("--context="):
            found = [arg]
        else:
            rest.append(arg)
        i += 1
    return found + rest


def completing() -> bool:
    """Whether a shell's completion function is calling: Typer's variable, named as Typer
    names it (``_MLOPS_COMPLETE`` for `mlops`: the program's name, upper case, ``-`` as ``_``)."""
    prog = os.path.basename(sys.argv[0]).replace("-", "_").upper()
    return bool(os.environ.get(f"_{prog}_COMPLETE"))
