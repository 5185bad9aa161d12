"""Shell completion: a completion call runs `mlops` bare, as opening the console does; it must
answer with candidates, fast, and never open the console or load a backend library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import entry

MLOPS = str(Path(sys.executable).parent / "mlops")
HEAVY = ("mlflow", "docker", "textual", "sklearn", "pandas", "prometheus_api_client")


def bash_completion(words: str, cword: int) -> subprocess.CompletedProcess[str]:
    """What bash's completion function runs (`mlops --show-completion bash` shows it)."""
    env = {**os.environ, "_MLOPS_COMPLETE": "complete_bash", "COMP_WORDS": words}
    env["COMP_CWORD"] = str(cword)
    # The timeout only matters if the call opened the console instead: it would wait for keys.
    return subprocess.run(
        [MLOPS], capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL
    )


def test_a_completion_call_lists_the_commands() -> None:
    done = bash_completion("mlops ", 1)
    assert done.returncode == 0, done.stderr
    candidates = done.stdout.split()
    assert {"models", "deploy", "runs", "train", "quickstart"} <= set(candidates), candidates


def test_a_completion_call_completes_subcommands_and_options() -> None:
    assert bash_completion("mlops deploy r", 2).stdout.split() == ["rollback"]
    assert "--json" in bash_completion("mlops deploy down --", 3).stdout.split()


def test_a_completion_call_never_opens_the_console_nor_imports_a_backend() -> None:
    # As the console script runs it: `mlops` bare, the shell's variables set.
    code = (
        "import sys\n"
        "sys.argv = ['mlops']\n"
        "from console.cli.entry import run\n"
        "try:\n    run()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    env = {**os.environ, "_MLOPS_COMPLETE": "complete_bash", "COMP_WORDS": "mlops mo"}
    env["COMP_CWORD"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.stdout.split() == ["models", "monitor"], out.stdout + out.stderr
    assert out.stderr.strip().endswith("HEAVY="), out.stderr


def test_show_completion_prints_the_script_to_source() -> None:
    # Typer detects the shell; its own switch makes the shell an argument, as a test needs.
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    done = subprocess.run(
        [MLOPS, "--show-completion", "bash"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "_MLOPS_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _mlops_completion mlops" in done.stdout


def test_help_offers_completion() -> None:
    done = subprocess.run([MLOPS, "--help"], capture_output=True, text=True, timeout=60)
    assert "--install-completion" in done.stdout and "--show-completion" in done.stdout


@pytest.mark.parametrize(
    ("argv0", "env", "completing"),
    [
        ("/venv/bin/mlops", {"_MLOPS_COMPLETE": "complete_zsh"}, True),
        ("mlops", {"_MLOPS_COMPLETE": ""}, False),  # set but empty: Typer ignores it too
        ("mlops", {}, False),
        ("/x/mlops-dev", {"_MLOPS_DEV_COMPLETE": "complete_bash"}, True),
        ("/x/mlops-dev", {"_MLOPS_COMPLETE": "complete_bash"}, False),
    ],
)
def test_completing_names_the_variable_as_typer_does(
    monkeypatch: pytest.MonkeyPatch, argv0: str, env: dict[str, str], completing: bool
) -> None:
    for name in ("_MLOPS_COMPLETE", "_MLOPS_DEV_COMPLETE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", [argv0])
    assert entry.completing() is completing
