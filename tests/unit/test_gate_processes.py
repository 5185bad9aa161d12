"""The gate's predict checks forked from the warm process (backends/mlflow/gate_forks.py):
each check in a process of its own that no other check touched, killed alone when it overruns,
its failures and its chatter reported, and the one-shot way when the warm process is gone."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.mlflow import gate_forks
from backends.mlflow.gate import isolated_predict_check

pytestmark = pytest.mark.slow  # model saves and the warm process's imports: seconds


@pytest.fixture(autouse=True)
def fresh_warm_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MLOPS_GATE_WARM", "1")
    gate_forks.stop()
    yield
    gate_forks.stop()


def model(tmp_path: Path, name: str, load: str) -> str:
    """A pyfunc model whose ``load_context`` runs ``load`` (its lines, indented by us) when
    it is loaded by a gate check (saving loads it too, here, to check the input example)."""
    import mlflow.pyfunc
    import pandas as pd

    code = tmp_path / f"{name}.py"
    body = "\n".join(f"            {line}" for line in load.splitlines())
    code.write_text(
        "import builtins, json, os, sys, time\n"
        "import mlflow.pyfunc\n"
        "from mlflow.models import set_model\n"
        "class M(mlflow.pyfunc.PythonModel):\n"
        "    def load_context(self, context):\n"
        "        if 'mlops-gate-home-' in os.getcwd():\n"
        f"{body}\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return [os.getpid()] * len(model_input)\n"
        "set_model(M())\n"
    )
    path = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "add type hints to predict": no need
        mlflow.pyfunc.save_model(
            str(path),
            python_model=str(code),
            input_example=pd.DataFrame({"x": [1.0, 2.0]}),
            pip_requirements=[],  # nothing to infer: a child process fewer per model
        )
    return str(path)


def test_no_check_sees_what_an_earlier_one_did(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    poisoner = model(
        tmp_path,
        "poisoner",
        "builtins.POISONED = True\n"
        "os.environ['POISONED'] = '1'\n"
        f"open({str(tmp_path / 'poisoner.pid')!r}, 'w').write(str(os.getpid()))",
    )
    snoop = model(
        tmp_path,
        "snoop",
        f"open({str(seen)!r}, 'w').write(json.dumps({{'poisoned': hasattr(builtins, "
        "'POISONED') or 'POISONED' in os.environ, 'pid': os.getpid(), 'home': os.environ['HOME'], "
        "'cwd': os.getcwd()}))",
    )
    assert isolated_predict_check(poisoner, timeout=120).passed
    first = isolated_predict_check(snoop, timeout=120)
    assert first.passed, first.detail
    found = json.loads(seen.read_text())
    assert found["poisoned"] is False
    assert found["pid"] != int((tmp_path / "poisoner.pid").read_text()) != os.getpid()
    assert found["home"] == found["cwd"] and found["home"] != os.environ.get("HOME")
    assert not Path(found["home"]).exists()  # its home went with it


def test_an_overrunning_check_is_killed_alone(tmp_path: Path) -> None:
    slow = model(tmp_path, "slow", "time.sleep(600)")
    quick = model(tmp_path, "quick", "pass")
    assert isolated_predict_check(quick, timeout=120).passed  # the warm process is up
    warm_pid = gate_forks._WARM.proc.pid  # type: ignore[union-attr]
    overran = isolated_predict_check(slow, timeout=2)
    assert not overran.passed and "took over 2s" in overran.detail
    after = isolated_predict_check(quick, timeout=120)
    assert after.passed, after.detail
    assert gate_forks._WARM.proc.pid == warm_pid  # type: ignore[union-attr]  # not restarted


def test_a_check_that_dies_or_chatters_says_so(tmp_path: Path) -> None:
    dies = model(tmp_path, "dies", "print('going down', file=sys.stderr)\nos._exit(7)")
    chatter = model(
        tmp_path, "chatter", "print('{\"id\": 1, \"passed\": false}')\nprint('x' * 100000)"
    )
    died = isolated_predict_check(dies, timeout=120)
    assert not died.passed
    assert "failed (7)" in died.detail and "going down" in died.detail
    spoke = isolated_predict_check(chatter, timeout=120)
    assert spoke.passed, spoke.detail  # what a model prints is not taken for an answer


def test_a_warm_process_that_died_is_replaced(tmp_path: Path) -> None:
    quick = model(tmp_path, "quick", "pass")
    assert isolated_predict_check(quick, timeout=120).passed
    warm = gate_forks._WARM
    assert warm is not None
    warm.proc.kill()
    warm.proc.wait()
    again = isolated_predict_check(quick, timeout=120)
    assert again.passed, again.detail
    assert gate_forks._WARM is not None and gate_forks._WARM is not warm


def test_the_warm_process_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = model(tmp_path, "quick", "pass")
    monkeypatch.setenv("MLOPS_GATE_WARM", "0")
    assert isolated_predict_check(quick, timeout=120).passed
    assert gate_forks._WARM is None
