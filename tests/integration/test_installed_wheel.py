"""An installed wheel is a working `mlops` (README, "Installed as a package"): built from this
checkout, installed into a fresh venv outside it and run from an empty directory with an empty
HOME, `mlops quickstart --no-console --local` trains, promotes and serves (and starts Prometheus
and Alertmanager with the shipped rules and routes when they are installed) from the files the
wheel carries (backends/shipped.py), never the checkout's.

Installing every dependency into the fresh venv would take minutes from the network, so the venv
sees this venv's site-packages for them through a .pth file. A directory added that way has its
own .pth files left unread, so the checkout's editable install of mlops-console is not importable
there: `console`, `backends` and `server` are the wheel's, which the tests assert.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Environment an operator's fresh shell would not have: nothing may point back at this checkout,
# its venv, the test session's state, or a tracking server, Docker engine or Prometheus.
NOT_INHERITED = (
    "MLFLOW_",
    "MLOPS_",
    "DOCKER_",
    "PROMETHEUS_",
    "ALERTMANAGER_",
    "XDG_",
    "PYTHON",
    "VIRTUAL_ENV",
)


@dataclass(frozen=True)
class Installed:
    """The fresh venv with the wheel installed."""

    venv: Path
    site: Path  # its site-packages, where the wheel went
    python: Path
    mlops: Path


def _run(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _copy_of_checkout(dest: Path) -> Path:
    """The checkout's files as a clone would have them (tracked, and new ones git does not
    ignore): the build writes build/ and *.egg-info beside its sources, which must not land in
    a checkout other runs and people are using, and nothing a run left in place may ride along."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    if listed.returncode != 0:  # not a git checkout: everything but the usual leftovers
        ignore = shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "build", "dist", "*.egg-info", ".*_cache", "mlruns"
        )
        shutil.copytree(ROOT, dest, ignore=ignore)
        return dest
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # listed but deleted in the working tree: not there to copy
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _build_wheel(source: Path, out: Path) -> Path:
    """``pip wheel`` as an operator would run it (its own build environment, setuptools from
    the index or pip's cache)."""
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check"]
    built = _run([*pip, "-w", str(out), str(source)])
    log = built.stdout + built.stderr
    if built.returncode != 0 and re.search(
        r"(No matching distribution|Could not find a version).*setuptools", log
    ):
        services.service_missing(f"pip could not fetch the build backend setuptools: {log[-500:]}")
    assert built.returncode == 0, log[-3000:]
    (wheel,) = out.glob("mlops_console-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    top = tmp_path_factory.mktemp("installed-wheel")
    assert not top.resolve().is_relative_to(ROOT)
    wheel = _build_wheel(_copy_of_checkout(top / "source"), top / "dist")
    venv = top / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)])
    if made.returncode != 0 and "ensurepip" in made.stdout + made.stderr:
        services.service_missing(f"python cannot make a venv with pip: {made.stderr[-300:]}")
    assert made.returncode == 0, made.stdout + made.stderr
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet"]
    done = _run([*pip, "--disable-pip-version-check", str(wheel)])
    assert done.returncode == 0, done.stdout + done.stderr
    where = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    site = Path(where.stdout.strip())
    # The dependencies only (see the module's docstring); after the wheel, so pip never saw
    # the checkout's editable install while installing it.
    (site / "mlops_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    mlops = venv / "bin" / "mlops"
    assert mlops.read_text().splitlines()[0] == f"#!{python}"
    return Installed(venv, site, python, mlops)


def fresh_env(installed: Installed, home: Path) -> dict[str, str]:
    """A new user's shell: HOME empty, the fresh venv's bin on PATH and no trace of the
    checkout, no tracking server (sqlite in the working directory), no Docker or Prometheus
    address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    path = [
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if p and not Path(p).resolve().is_relative_to(ROOT)
    ]
    env["PATH"] = os.pathsep.join([str(installed.venv / "bin"), *path])
    env["HOME"] = str(home)
    return env


PROBE = r"""
import json, shutil, sys, tempfile
from pathlib import Path

import backends, console, server
from backends import shipped
from backends.docker import images
from backends.prometheus import alertmanager_config
from console.config import default_project
from console.runbooks import local_runbook

names = [
    "Dockerfile", "requirements.lock", "deploy/prometheus/rules.yml",
    "deploy/prometheus/prometheus.yml", "deploy/alertmanager/alertmanager.yml",
    "docs/runbooks/MlopsFeatureDrift.md", "examples/iris/MLproject", "examples/loans/MLproject",
    "scripts/build-wheelhouse.sh", "scripts/build-base-image.sh", "server/requirements.txt",
]
found = {name: str(shipped.path(name)) for name in names}
found["alertmanager_config.SHIPPED"] = str(alertmanager_config.SHIPPED)
found["local_runbook"] = str(local_runbook("docs/runbooks/MlopsFeatureDrift.md"))
found["default_project"] = str(default_project().resolve() / "MLproject")
modules = {m.__name__: m.__file__ for m in (console, backends, server)}

# What building a serving image takes from the installation: the wheelhouse's inputs (the script
# runs with `true` standing in for pip, so nothing is downloaded) and the build context.
with tempfile.TemporaryDirectory() as tmp:
    sys.executable = shutil.which("true")
    wheels = images.ensure_wheelhouse(print)
    model = Path(tmp, "model")
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    context = Path(tmp, "context")
    context.mkdir()
    images._assemble_context(context, wheels, model)
    image = {
        "requirements": (wheels / "requirements.txt").read_text(),
        "constraints": (wheels / "constraints.txt").read_text(),
        "context": sorted(str(p.relative_to(context)) for p in context.rglob("*")),
    }
print(json.dumps({
    "found": found, "modules": modules, "source_tree": str(shipped.source_tree()),
    "image": image,
}))
"""


def test_shipped_files_resolve_inside_the_installed_package(
    installed: Installed, tmp_path: Path
) -> None:
    env = fresh_env(installed, tmp_path)
    env["MLOPS_WHEELHOUSE"] = str(tmp_path / "wheelhouse")
    probe = _run([str(installed.python), "-c", PROBE], cwd=tmp_path, env=env)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    answer = json.loads(probe.stdout.splitlines()[-1])

    # The wheel's code, not the checkout's editable install.
    for name, file in answer["modules"].items():
        assert Path(file).is_relative_to(installed.site), (name, file)
    assert answer["source_tree"] == "None"
    # Every file the product reads at run time is the installed package's own copy.
    for name, file in answer["found"].items():
        path = Path(file)
        assert path.is_relative_to(installed.site) and path.is_file(), (name, file)
        assert not path.resolve().is_relative_to(ROOT), (name, file)

    # A serving image can be built from the installation: the wheelhouse from the shipped lock
    # and the server's requirements, the context from the shipped Dockerfile and server package.
    image = answer["image"]
    assert image["requirements"] == (ROOT / "server" / "requirements.txt").read_text()
    assert re.search(r"(?m)^mlflow-skinny==\S+$", image["constraints"])
    for part in ("Dockerfile", "server/__main__.py", "server/app.py", "model/MLmodel"):
        assert part in image["context"], image["context"]


def _recorded(home: Path) -> dict[str, tuple[int, str | None]]:
    """The processes the quickstart recorded (backends/lifecycle/background.py's state file)."""
    found = {}
    for pids in (home / ".local" / "state" / "mlops-console" / "quickstart").glob("*/pids.json"):
        for name, info in json.loads(pids.read_text()).items():
            found[name] = (int(info["pid"]), info.get("started"))
    return found


def _alive(pid: int, started: str | None) -> bool:
    """Still the very process that was recorded (not a zombie, not a reused PID)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == started


def _end_leftovers(recorded: dict[str, tuple[int, str | None]]) -> list[str]:
    """Wait for the recorded processes to end; kill (by PID) any still running after a grace."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(*p) for p in recorded.values()):
        time.sleep(0.3)
    left = [f"{name} (pid {p[0]})" for name, p in recorded.items() if _alive(*p)]
    for pid, started in recorded.values():
        if _alive(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    return left


def mlops(installed: Installed, *args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """The installed ``mlops``; its own session, so that a hang is ended with everything it
    started in the foreground (what it leaves in the background is in its state file)."""
    proc = subprocess.Popen(
        [str(installed.mlops), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mlops {' '.join(args)} hung:\n{out[-3000:]}")
    return proc.returncode, out


def test_quickstart_runs_from_the_installed_wheel(installed: Installed, tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = fresh_env(installed, home)
    project = installed.site / "mlops_console_shipped" / "examples" / "iris"
    before = sorted(p.name for p in project.iterdir())

    recorded: dict[str, tuple[int, str | None]] = {}
    url = ""
    try:
        code, out = mlops(installed, "quickstart", "--no-console", "--local", cwd=work, env=env)
        recorded = _recorded(home)
        assert code == 0, out[-4000:]
        assert f"tracking store: sqlite:///{work}/mlflow.db" in out, out
        assert re.search(r"run \w+: accuracy [\d.]+ -> iris v2", out), out
        assert "[3/6] promoting iris v" in out, out
        assert "      as a local process (pid" in out, out
        assert "(0 failed)" in out, out
        url = out.split("watch it:   mlops monitor --target ")[1].split()[0]
        served = httpx.get(f"{url}/version", timeout=10).json()
        assert served["name"] == "iris" and served["alias"] == "champion", served

        if shutil.which("prometheus"):  # the shipped rules, from the installed package
            prom = out.split("      Prometheus at ")[1].split()[0]
            groups = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
            rules = {r["name"] for g in groups for r in g["rules"]}
            assert {"MlopsFeatureDrift", "MlopsTargetDown"} <= rules, rules
        elif services.REQUIRE_SERVICES:
            pytest.fail("Prometheus is not installed (apt-get install prometheus)")
        if shutil.which("prometheus") and (
            shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        ):  # the shipped routes
            am = out.split("alerts:     ALERTMANAGER_URL=")[1].split()[0]
            status = httpx.get(f"{am}/api/v2/status", timeout=10).json()
            assert "receiver: mlops-retrain" in status["config"]["original"], status
        elif services.REQUIRE_SERVICES:
            pytest.fail("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
        # Training ran the installed example in place and left it as installed.
        assert sorted(p.name for p in project.iterdir()) == before
    finally:
        recorded = recorded or _recorded(home)
        stop_code, stopped = mlops(installed, "quickstart", "--stop", cwd=work, env=env)
        left = _end_leftovers(recorded)
    assert stop_code == 0, stopped
    assert "server (pid" in stopped, stopped
    assert not left, f"`mlops quickstart --stop` left these running (killed now): {left}"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
