"""Shared fixtures. The real-service ones live in tests/services.py (see its docstring)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import ports
from tests import services

# Child processes (mlflow run, the example's `python train.py`) must find this venv's python.
os.environ["PATH"] = services.VENV_BIN + os.pathsep + os.environ.get("PATH", "")
# The run index, training logs and quickstart state of a test session stay in the session:
# never the operator's own ~/.cache or ~/.local/state.
_SESSION_DIR = tempfile.mkdtemp(prefix="mlops-tests-")
os.environ["MLOPS_CACHE_DIR"] = os.path.join(_SESSION_DIR, "cache")
os.environ["MLOPS_STATE_DIR"] = os.path.join(_SESSION_DIR, "state")
# Nor the operator's contexts: a test that wants a config file writes its own.
os.environ["MLOPS_CONFIG"] = os.path.join(_SESSION_DIR, "no-config.toml")

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_frame():
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    return frame


def example_train_module():
    spec = importlib.util.spec_from_file_location("iris_train", ROOT / "examples/iris/train.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _environment_kept() -> Iterator[None]:
    """Every test leaves os.environ as it found it. `mlops` commands run in-process (CliRunner)
    put their context into the environment as the real command does (MLOPS_CONTEXT, a
    context's settings); left there, they steer the next test's subprocesses and tmux
    sessions (a console that opened on another test's tracking server)."""
    from console import contexts

    saved = dict(os.environ)
    yield
    contexts._applied.clear()
    contexts._replaced.clear()
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def iris_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sklearn model saved to disk, with a drift reference and baked metadata."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    frame = iris_frame()
    x, y = frame[FEATURES], frame["target"]
    clf = RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1).fit(x, y)
    path = tmp_path_factory.mktemp("model") / "model"
    mlflow.sklearn.save_model(
        clf,
        str(path),
        signature=infer_signature(x, clf.predict(x)),
        input_example=x.head(3),
        skops_trusted_types=["sklearn.tree._tree.Tree"],
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
    )
    reference = example_train_module().drift_reference(x, 500, 0)
    (path / "drift_reference.json").write_text(json.dumps(reference))
    (path / "mlops-model.json").write_text(
        json.dumps(
            {
                "name": "iris",
                "version": "3",
                "run_id": "abc123",
                "alias": "champion",
                "validation": {"accuracy": 0.96, "f1_macro": 0.95},
            }
        )
    )
    return path


@pytest.fixture(scope="session")
def mlflow_server() -> services.MlflowServer:
    """The run's one real `mlflow server` (it takes ~20 s to start), shared by every worker."""
    return services.shared_mlflow_server()


@pytest.fixture(scope="session")
def mlflow_server_on_postgres() -> services.MlflowServer:
    """The run's one `mlflow server` on PostgreSQL (as a team runs it), shared by every worker."""
    return services.shared_mlflow_server_on_postgres()


STORES = ["sqlite", "postgresql"]


def server_for(store: str) -> services.MlflowServer:
    """The run's tracking server on ``store`` (modules that run against both override
    ``mlflow_server`` with a fixture parametrised by STORES)."""
    if store == "postgresql":
        return services.shared_mlflow_server_on_postgres()
    return services.shared_mlflow_server()


@pytest.fixture
def tracking_uri(
    mlflow_server: services.MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Point MLflow (in this process and in children) at the session's server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    if "mlflow" in sys.modules:
        # An earlier test's mlflow.set_tracking_uri() in this worker outranks the variable.
        import mlflow

        mlflow.set_tracking_uri(mlflow_server.url)
    yield mlflow_server.url
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: the variable again


@pytest.fixture
def experiment_name() -> str:
    """A fresh experiment name, so tests sharing the server never see each other's runs."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A Docker SDK client for the real engine."""
    client = services.docker_client_or_skip()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """The local base image built by scripts/build-base-image.sh (no registry here)."""
    import docker.errors

    try:
        docker_client.images.get(services.BASE_IMAGE)
    except docker.errors.ImageNotFound:
        services.service_missing(
            f"base image {services.BASE_IMAGE} is missing: run scripts/build-base-image.sh"
        )
    return services.BASE_IMAGE


@pytest.fixture
def prometheus() -> Iterator[services.PrometheusServer]:
    """The run's one real Prometheus (shipped rules, `for:` 2 s), with a target file of this
    test's own: other tests' targets are scraped beside it, so queries name their own labels."""
    server = services.shared_prometheus().for_another_user()
    try:
        yield server
    finally:
        server.targets_path.unlink(missing_ok=True)


@pytest.fixture
def alertmanager() -> services.AlertmanagerServer:
    """The run's one real Alertmanager (the shipped routes, waits cut to a second). Shared:
    a test posts alerts with label values of its own and looks only at those."""
    return services.shared_alertmanager()


# --------------------------------------------------------------------------- the run


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_CostliestUnitsFirst(), "mlops-costliest-units-first")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        # Each worker draws its ports (its own and the product's, in the CLI commands it
        # runs too) from a slice of its own: two workers never pick the same port at once.
        # A worker that replaces a crashed one gets a new id past the count: modulo, it takes
        # a slice in the range again (shared with the one it replaced, which is gone).
        low, high = ports.port_range()
        count = max(int(workerinput.get("workercount", 1)), 1)
        worker = str(workerinput.get("workerid", "gw0")).removeprefix("gw")
        index = (int(worker) if worker.isdigit() else 0) % count
        size = (high - low + 1) // count
        if size >= 16:  # else too many workers for the range: all of them draw from all of it
            start = low + index * size
            os.environ[ports.PORT_RANGE_ENV] = f"{start}-{start + size - 1}"
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        # Before the workers start: they inherit it, and so find the services the first
        # of them started.
        shared = tempfile.mkdtemp(prefix="mlops-tests-shared-")
        os.chmod(shared, 0o755)  # PostgreSQL runs as its own user, and must reach its dir
        os.environ[services.SHARED_ENV] = shared


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        services.stop_shared()  # every worker is done with them


# How the run is spread over xdist workers (`make test` runs --dist loadgroup with xdist's own
# reordering off). A test file with module fixtures (a registry of logged models, a served
# model) is one unit, so they are built once; one that runs against both stores is two units,
# one per store, so the two halves run at once. Any other test is a unit of its own. The units
# that cost most start first: a long one started last is the run's tail.


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    grouping = _loadgroup(config)
    for item in items:
        unit = _unit_of(item)
        item.add_marker(pytest.mark.xdist_group(unit))
        if grouping and unit != item.nodeid:
            _name_group(item, unit)


def _loadgroup(config: pytest.Config) -> bool:
    """Whether the run is spread by group: asked of the controller (--dist) or of a worker,
    where xdist turns --dist into "no" and says it in its own ``loadgroup`` option."""
    return bool(config.getoption("loadgroup", False)) or (
        config.getoption("dist", "no") == "loadgroup"
    )


def _name_group(item: pytest.Item, unit: str) -> None:
    """Give the test's id the ``@group`` suffix xdist's loadgroup schedules by. xdist writes it
    to ``item._nodeid``, which pytest 9.2 no longer reads (its ids are ``item._id``:
    pytest-dev/pytest-xdist#1386), and every test then went out on its own: each worker that
    got one test of a module built that module's fixtures again (the served images, the
    trained registries), several times over a run. Private on both sides, so both are set."""
    suffixed = f"{item.nodeid}@{unit}"
    current = getattr(item, "_id", None)
    if current is not None and not isinstance(current, str):
        item._id = type(current).parse(suffixed)  # type: ignore[attr-defined]
    item._nodeid = suffixed  # type: ignore[attr-defined]


class _CostliestUnitsFirst:
    @pytest.hookimpl(trylast=True)  # after pytest has ordered the tests for its fixtures
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        if not _loadgroup(config):
            return  # `make test-fast`'s --dist load hands out tests in pytest's order best
        units = {item.nodeid: _unit_of(item) for item in items}
        cost: dict[str, float] = {}
        first: dict[str, int] = {}
        for index, item in enumerate(items):
            unit = units[item.nodeid]
            cost[unit] = cost.get(unit, 0) + _cost(item)
            first.setdefault(unit, index)
        # Stable: a unit's tests keep pytest's order among themselves.
        items.sort(key=lambda item: (-cost[units[item.nodeid]], first[units[item.nodeid]]))


def _unit_of(item: pytest.Item) -> str:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    if not any(d and d[-1].scope in ("module", "class", "package") for d in defs):
        return item.nodeid
    module = item.nodeid.split("::", 1)[0]
    callspec = getattr(item, "callspec", None)
    store = callspec.params.get("mlflow_server") if callspec is not None else None
    # No brackets in a group's name: xdist reads "@group" only after the id's last "]".
    return f"{module}:{store}" if isinstance(store, str) else module


def _cost(item: pytest.Item) -> float:
    """What a test took in a recorded run (tests/durations.json, scripts/test-durations.py),
    else a guess from its marks: enough to start the long units first."""
    nodeid = item.nodeid.split("@", 1)[0]
    if nodeid in _DURATIONS:
        return _DURATIONS[nodeid]
    if item.get_closest_marker("slow") or item.get_closest_marker("tmux"):
        return 30.0
    return 5.0 if item.get_closest_marker("integration") else 0.1


def _recorded_durations() -> dict[str, float]:
    try:
        found = json.loads((ROOT / "tests" / "durations.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in found.items()} if isinstance(found, dict) else {}


_DURATIONS = _recorded_durations()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_STARTED] = services.now()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and call.when in ("setup", "call"):
        since = item.stash.get(_STARTED, services.now())
        for title, text in services.failure_logs(since):
            report.sections.append((title, text))


_STARTED = pytest.StashKey[Any]()
