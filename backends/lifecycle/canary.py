"""A canary release of a deployment: a second version beside the stable one, a share of the
traffic moved to it step by step while its own figures pass the checks, then promoted — or
aborted, all traffic back to the stable version, nothing else changed.

The decisions are ``backends.canary``'s (pure); this module carries them out against the engine
and the router, and keeps the release in a file (``$MLOPS_STATE_DIR/canary/NAME.json``) that a
worker process (``python -m backends.lifecycle.canary_worker NAME``) drives: the analysis goes
on when the console or the command that started it is closed, and any of them reattaches by
reading the file. A person's resume, abort or promote is written into the file as a request
the worker carries out (or, when no worker is alive, the requesting process itself).

Figures come from Prometheus when one is configured (``PROMETHEUS_URL`` when the release
started: the canary container is one of its file_sd targets, labelled ``role="canary"``, for
the release's life), else from the two model containers' own /metrics (the direct scrape), two
scrapes an interval apart. Either way each version's series are its own: the stable one's come
through the router, the canary's from its container. A Prometheus that does not answer leaves
the checks inconclusive: the release pauses for a person, as with no traffic.
Every start, step, failed evaluation, pause, abort and promotion is written into the
deployment's history stream (the registry's ``deploy/NAME``) with the figures that decided it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import httpx

from backends.canary import analysis
from backends.canary.analysis import Action, Decision, Plan, State, Status
from backends.canary.checks import evaluate
from backends.canary.figures import figures_between, figures_from_prometheus
from backends.docker import containers
from backends.docker.engine import LABEL, url_on
from backends.errors import BackendError, Conflict, GateFailed, InvalidInput, NotFound
from backends.lifecycle import placement
from backends.lifecycle.build import image_for
from backends.lifecycle.deploy import changing, check_name
from backends.lifecycle.handles import Handles
from backends.lifecycle.targets import refresh_quietly
from backends.mlflow.training import state_dir
from backends.prometheus.discovery import default_targets_path
from backends.records import Deployment, ModelVersion, version_number

__all__ = [
    "Release",
    "abort_release",
    "candidate",
    "outcome_of",
    "plan_release",
    "read_release",
    "releases",
    "request",
    "run_worker",
    "start_release",
    "switch_in",
]

LogLine = Callable[[str], None]
MIN_REQUESTS = 5  # fewer in an interval decide nothing (inconclusive): a p99 of three is noise
COMMANDS = ("resume", "abort", "promote")


def _ignore(_: str) -> None:
    pass


def releases_dir() -> Path:
    return state_dir() / "canary"


def release_path(name: str) -> Path:
    return releases_dir() / f"{name}.json"


@dataclass
class Release:
    """One canary release, as kept in its file."""

    deployment: str
    model: str
    stable_version: int | None
    canary_version: int
    canary_container: str
    canary_port: int
    image: str
    alias: str
    follow_alias: bool
    sticky_header: str
    reason: str
    state: State
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    next_evaluation: float = 0.0  # epoch seconds; 0 while paused or finished
    worker_pid: int = 0
    command: str = ""  # a person's request the worker has not carried out yet
    command_note: str = ""
    figures: dict[str, Any] = field(default_factory=dict)  # the last evaluation's, per role
    problem: str = ""  # why the last attempt to act failed (retried), else ""
    prometheus_url: str = ""  # where the figures come from; "" = the direct scrape

    @property
    def figures_source(self) -> str:
        """Where the figures come from, for people."""
        return f"Prometheus {self.prometheus_url}" if self.prometheus_url else "the direct scrape"

    def to_json(self) -> str:
        doc = asdict(self)
        doc["state"] = self.state.to_dict()
        if not self.prometheus_url:  # a file an earlier version of this reads as before
            del doc["prometheus_url"]
        return json.dumps(doc, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Release:
        try:
            doc = json.loads(text)
            doc["state"] = State.from_dict(doc["state"])
            # A field a later version added is not ours to read: the rest still is.
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in doc.items() if k in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"a canary release file that does not read: {exc!r}") from exc

    @property
    def worker_alive(self) -> bool:
        return _alive(self.worker_pid)


def read_release(name: str) -> Release | None:
    """The release of deployment ``name``, if one was ever started here (finished or not)."""
    try:
        return Release.from_json(release_path(name).read_text())
    except FileNotFoundError:
        return None


def releases() -> list[Release]:
    """Every release kept here, newest first."""
    found = []
    for path in releases_dir().glob("*.json"):
        with contextlib.suppress(OSError, InvalidInput):
            found.append(Release.from_json(path.read_text()))
    return sorted(found, key=lambda r: r.started, reverse=True)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One writer of a release file at a time (the worker, a person's request)."""
    releases_dir().mkdir(parents=True, exist_ok=True)
    with (releases_dir() / f"{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _save(release: Release) -> None:
    release.updated = time.time()
    path = release_path(release.deployment)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(release.to_json())
    tmp.replace(path)


# ---------------------------------------------------------------------- start


@dataclass(frozen=True)
class ReleasePlan:
    """What starting a canary would do, checked before anything starts."""

    deployment: Deployment
    version: ModelVersion
    plan: Plan
    sticky_header: str
    reason: str
    prometheus_url: str = ""


def plan_release(
    h: Handles,
    name: str,
    reference: str,
    plan: Plan,
    *,
    sticky_header: str = "",
    reason: str = "",
    prometheus_url: str = "",
) -> ReleasePlan:
    """Refused before anything starts, naming the problem: no such deployment, a canary of
    the version already served, a release already running (finished ones are history), a
    Prometheus to take the figures from that does not answer."""
    deployment, version = candidate(h, name, reference, "canary")
    running = read_release(name)
    if running is not None and not running.state.finished:
        raise Conflict(
            f"a canary release of {name!r} (v{running.canary_version}) is {running.state.status}:"
            f" promote or abort it first (mlops deploy canary {name} --abort)"
        )
    if placement.canary_units(h, name):
        raise Conflict(
            f"deployment {name!r} has a canary no release here knows of: "
            f"`mlops deploy canary {name} --abort` removes it"
        )
    if sticky_header and not sticky_header.replace("-", "").isalnum():
        raise InvalidInput(f"--sticky-header takes a header name, not {sticky_header!r}")
    if prometheus_url:
        probe = _prometheus(prometheus_url)
        try:
            probe.vector("vector(1)")  # Unavailable, exit 3, when it is down
        finally:
            probe.close()
    return ReleasePlan(deployment, version, plan, sticky_header, reason, prometheus_url)


def candidate(h: Handles, name: str, reference: str, kind: str) -> tuple[Deployment, ModelVersion]:
    """Deployment ``name`` and the version ``reference`` names, as a ``kind`` ("canary",
    "shadow") beside it: refused when it is another model or the version already served."""
    check_name(name)
    deployment = placement.get_deployment(h, name)
    version = h.registry().resolve(reference)
    if version.name != deployment.model:
        raise InvalidInput(
            f"deployment {name!r} serves {deployment.model}; a {kind} of {version.name} "
            "would be another model (deploy it under its own name)"
        )
    if version.version == deployment.version:
        raise InvalidInput(
            f"deployment {name!r} already serves {version.name} v{version.version}: "
            f"a {kind} must be another version"
        )
    return deployment, version


def switch_in(h: Handles, name: str, version: ModelVersion, what: str) -> Deployment:
    """``version`` switched in as deployment ``name``'s stable one, as any deploy (0 failed
    requests), from its image that is there; labelled with no alias (a candidate pinned by
    number: the alias still names the old version)."""
    from backends.docker import images

    client = h.docker()
    image = images.find_image(client, version)
    if image is None:
        raise BackendError(f"the {what}'s image of v{version.version} is gone", title="No image")
    current = placement.get_deployment(h, name)
    with changing(h, name, image.ref, f"{what} promotion"):
        # Over the deployment that is there: its router keeps its address, a swarm's version
        # keeps its number of tasks.
        deployment, _ = placement.run(
            h, image, name, port=current.port or 0, host=current.host, alias=""
        )
    refresh_quietly(client)  # the router's target now says the new version
    return deployment


def start_release(
    h: Handles, planned: ReleasePlan, *, on_log: LogLine = _ignore, spawn: bool = True
) -> Release:
    """Build the canary's image if needed, start its container beside the stable one (a
    container that never becomes ready is removed: nothing changed), give it the plan's first
    weight, write the history entry and the release file, and start the worker."""
    name = planned.deployment.name
    image, _ = image_for(h, planned.version, on_log)
    client = h.docker()
    with changing(h, name, image.ref, "canary"):
        now = placement.get_deployment(h, name)
        if now.version != planned.deployment.version:
            raise Conflict(
                f"deployment {name!r} moved to v{now.version} since the plan "
                f"(v{planned.deployment.version}): look again"
            )
        on_log(f"starting v{planned.version.version} as a canary, waiting for /ready")
        unit = placement.start_canary(h, image, name, now.alias)
        state = analysis.start(planned.plan)
        try:
            router = placement.router_api(h, name)
            router.set_canary(
                unit.upstream,
                str(planned.version.version),
                state.weight,
                planned.sticky_header or None,
            )
        except BaseException:
            # The router may have taken the canary before its answer was lost: take it back
            # before the container goes, or its share of the clients would find nobody.
            with contextlib.suppress(Exception):
                placement.router_api(h, name).remove_canary()
            placement.remove_canaries(h, name)
            raise
    release = Release(
        deployment=name,
        model=planned.version.name,
        stable_version=planned.deployment.version,
        canary_version=planned.version.version,
        canary_container=unit.name,
        canary_port=unit.port,
        image=image.ref,
        alias=now.alias,
        follow_alias=now.follow_alias,
        sticky_header=planned.sticky_header,
        reason=planned.reason,
        state=state,
        next_evaluation=time.time() + planned.plan.interval,
        prometheus_url=planned.prometheus_url,
    )
    with _locked(name):
        _save(release)  # first: a release on record is one a person can see and abort
    if problem := refresh_quietly(client):
        on_log(problem)
    checks = ", ".join(c.expression for c in planned.plan.checks)
    steps = ",".join(f"{w:g}" for w in planned.plan.steps)
    _history(
        h,
        release,
        f"canary v{release.canary_version} started at {state.weight:g} %: steps {steps}, "
        f"every {planned.plan.interval:g} s, checks {checks}, failure limit "
        f"{planned.plan.failure_limit}, figures from {release.figures_source}"
        + (f"; {planned.reason}" if planned.reason else ""),
    )
    if spawn:
        release.worker_pid = spawn_worker(h, name)
    return release


def spawn_worker(h: Handles, name: str) -> int:
    """Start the release's worker in its own session (a closed terminal must not stop it),
    on this operation's tracking server and engine; its output goes to ``NAME.log`` beside
    the release file."""
    from backends.mlflow.training import absolute_tracking_uri

    env = dict(os.environ, MLFLOW_TRACKING_URI=absolute_tracking_uri(h.tracking_uri))
    if h.docker_host:
        env["DOCKER_HOST"] = h.docker_host
    env["MLOPS_STATE_DIR"] = str(state_dir())
    log = (releases_dir() / f"{name}.log").open("a", encoding="utf-8")
    with log:
        child = subprocess.Popen(
            [sys.executable, "-m", "backends.lifecycle.canary_worker", name],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    with _locked(name):
        release = read_release(name)
        if release is not None and not _alive(release.worker_pid):
            release.worker_pid = child.pid
            _save(release)
    return child.pid


# ---------------------------------------------------------------------- the worker


def run_worker(
    h: Handles, name: str, *, sleep: Callable[[float], None] = time.sleep, tick: float = 0.5
) -> Release:
    """Drive release ``name`` until it is promoted or aborted: evaluate every interval, act
    on each decision, carry out a person's requests. Returns the finished release.

    Nothing but the release's end stops it: a pass that fails (the engine or the registry
    not answering, anything unexpected) is written into the release's ``problem`` and the next
    pass tries again, so a release is never left at its weight with nobody driving it."""
    with _locked(name):
        release = _must(name)
        if _alive(release.worker_pid) and release.worker_pid != os.getpid():
            raise Conflict(
                f"the canary release of {name!r} has a worker already (pid {release.worker_pid})"
            )
        release.worker_pid = os.getpid()
        _save(release)
    if release.prometheus_url:
        _await_first_scrape(release, sleep)
    try:
        before = _scrapes(h, release)
    except Exception as exc:  # the loop below drives the release whatever this one does
        _note_problem(name, f"{exc.__class__.__name__}: {exc}")
        before = {}
    since = time.monotonic()
    while True:
        try:
            with _locked(name):
                release = _must(name)
                if release.state.finished:
                    return release
                if release.command:
                    release = _carry_out(h, release)
                    _save(release)
                    before, since = _scrapes(h, release), time.monotonic()
                    continue
                # Due by the window measured here, a whole interval since the last scrape:
                # not by the clock in the file, which a restarted worker finds long past.
                due = (
                    release.state.status == Status.RUNNING
                    and time.monotonic() - since >= release.state.plan.interval
                )
                if due:
                    after = _scrapes(h, release)
                    release = _evaluate(h, release, before, after, time.monotonic() - since)
                    _save(release)
            if due:
                before, since = _scrapes(h, release), time.monotonic()
        except Exception as exc:  # the loop is the release's only driver: it goes on
            _note_problem(name, f"{exc.__class__.__name__}: {exc}")
        sleep(tick)


def _note_problem(name: str, problem: str) -> None:
    with contextlib.suppress(Exception), _locked(name):
        release = _must(name)
        release.problem = problem
        _save(release)


def _evaluate(
    h: Handles,
    release: Release,
    before: dict[str, str | None],
    after: dict[str, str | None],
    seconds: float,
) -> Release:
    gone = _canary_gone(h, release)
    if gone:
        # A canary that crashed or was removed fails every request the router still sends
        # it, and its own figures can never say so: it is aborted, not paused.
        state, decision = analysis.abort_for(release.state, f"the canary {gone}")
        return _act(h, release, state, decision)
    if not release.prometheus_url:
        figures = _scraped_figures(release, before, after, seconds)
    else:
        try:
            figures = _prometheus_figures(release, seconds)
        except BackendError as exc:
            # Inconclusive, said as such: no figure could be read, for this reason.
            state, decision = analysis.pause_for(release.state, f"no figures: {exc.message}")
            return _act(h, replace(release, figures={}), state, decision)
    results = evaluate(release.state.plan.checks, figures["canary"], figures["stable"])
    state, decision = analysis.decide(release.state, results)
    release = replace(release, figures=figures)
    return _act(h, release, state, decision)


def _scraped_figures(
    release: Release,
    before: dict[str, str | None],
    after: dict[str, str | None],
    seconds: float,
) -> dict[str, dict[str, float | None]]:
    """Both versions' figures between two direct scrapes (none for a server that did not
    answer either)."""
    figures: dict[str, dict[str, float | None]] = {}
    for role in ("canary", "stable"):
        first, last = before.get(role), after.get(role)
        version = str(release.canary_version if role == "canary" else release.stable_version)
        figures[role] = {}
        if first is None or last is None or seconds <= 0:
            continue
        with contextlib.suppress(InvalidInput):
            figures[role] = figures_between(
                first, last, seconds, version=version, min_requests=MIN_REQUESTS
            ).values()
    return figures


def _canary_gone(h: Handles, release: Release) -> str:
    """How the canary's container or service is gone ("is exited", "is missing"), or ""
    while it runs."""
    return placement.canary_gone(h, release.deployment, release.canary_container)


def _act(h: Handles, release: Release, state: State, decision: Decision) -> Release:
    """Carry out ``decision`` (which left ``state``). A step that fails keeps the old state,
    says why, and is decided again an interval later; a promotion the gate or another change
    refuses pauses the release for a person with the reason in its history; a promotion that
    switched the version is promoted, whatever its cleanup still has to do."""
    interval = state.plan.interval
    try:
        if decision.action in (Action.STEP_UP, Action.RESUME):
            placement.router_api(h, release.deployment).set_weight(state.weight)
        elif decision.action == Action.ABORT:
            if targets := _abort(h, release):
                release = replace(release, problem=targets)
        elif decision.action == Action.PROMOTE:
            cleanup = _promote(h, release, decision)
            if cleanup:
                release = replace(release, problem=cleanup)
    except (GateFailed, Conflict) as exc:
        if decision.action != Action.PROMOTE or release.state.status != Status.RUNNING:
            return replace(release, problem=f"{decision.action}: {exc.message}")
        paused, pause = analysis.pause_for(release.state, f"promotion refused: {exc.message}")
        release = replace(release, state=paused, next_evaluation=0.0, problem=exc.message)
        _history(h, release, pause.line)
        return release
    except BackendError as exc:
        return replace(
            release,
            problem=f"{decision.action}: {exc.message}",
            next_evaluation=time.time() + interval,
        )
    waiting = state.status != Status.RUNNING
    release = replace(
        release,
        state=state,
        problem=release.problem if decision.action in (Action.PROMOTE, Action.ABORT) else "",
        next_evaluation=0.0 if waiting else time.time() + interval,
    )
    _history(h, release, decision.line)
    return release


def _carry_out(h: Handles, release: Release) -> Release:
    """A person's request, on the state as it is now; a refusal is said in ``problem`` with
    the word "refused" (``request`` raises it as a Conflict)."""
    command, note = release.command, release.command_note or f"by {_who(h)}"
    release = replace(release, command="", command_note="")
    steps = {"resume": analysis.resume, "abort": analysis.abort, "promote": analysis.promote}
    try:
        state, decision = steps[command](release.state, note)
    except (Conflict, KeyError) as exc:
        return replace(release, problem=f"{command} refused: {exc}")
    return _act(h, release, state, decision)


def request(h: Handles, name: str, command: str, note: str = "", timeout: float = 300.0) -> Release:
    """A person's ``resume``, ``abort`` or ``promote``: handed to the worker when one runs
    (and waited for), carried out here when none does."""
    if command not in COMMANDS:
        raise InvalidInput(f"a canary takes {', '.join(COMMANDS)}, not {command!r}")
    with _locked(name):
        release = _must(name)
        if release.state.finished:
            raise Conflict(
                f"the canary release of {name!r} is {release.state.status} already; "
                "nothing to " + command
            )
        worker = release.worker_alive and release.worker_pid != os.getpid()
        orphaned = command == "resume" and release.state.status == Status.RUNNING and not worker
    if orphaned:
        # Its worker is gone (killed, a reboot) while it ran: a new one carries on.
        spawn_worker(h, name)
        return release
    with _locked(name):
        release = _must(name)
        worker = release.worker_alive and release.worker_pid != os.getpid()
        release.command, release.command_note = command, note or f"by {_who(h)}"
        if not worker:
            release = _carry_out(h, release)
        _save(release)
    if not worker:
        if command == "resume" and not release.state.finished:
            spawn_worker(h, name)
        return outcome_of(release, command)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = _must(name)
        if not current.command:
            return outcome_of(current, command)
        if not current.worker_alive:  # it died before carrying it out: do it here
            return request(h, name, command, note, timeout)
        time.sleep(0.2)
    raise BackendError(
        f"the canary worker of {name!r} (pid {release.worker_pid}) did not carry out "
        f"{command} within {timeout:.0f} s; it stays requested",
        title="Canary busy",
    )


LEAVES = {"resume": Status.RUNNING, "abort": Status.ABORTED, "promote": Status.PROMOTED}


def outcome_of(release: Release, command: str) -> Release:
    """The release after a person's ``command``; Conflict when it was refused (the state did
    not allow it), BackendError when carrying it out failed (the reason in both)."""
    if release.problem.startswith(f"{command} refused"):
        raise Conflict(release.problem.removeprefix(f"{command} refused: "), title="Canary")
    if release.state.status != LEAVES[command]:
        raise BackendError(
            f"could not {command} the canary of {release.deployment}: "
            f"{release.problem or 'it is ' + str(release.state.status)}",
            title="Canary",
        )
    return release


def abort_release(h: Handles, name: str, note: str = "") -> Release | None:
    """Abort the running release of ``name``; with none on record, remove whatever candidate
    the deployment has: a shadow (the router's mirror), or a canary container and router canary
    of a release started elsewhere or lost."""
    release = read_release(name)
    if release is not None and not release.state.finished:
        return request(h, name, "abort", note)
    leftovers = placement.canary_units(h, name)
    router = placement.router_api(h, name)
    routed = router.state()
    if routed.get("canary") is None and routed.get("mirror") is None and not leftovers:
        raise NotFound(f"deployment {name!r} has no canary or shadow to abort")
    if routed.get("canary") is not None:
        router.remove_canary()
    if routed.get("mirror") is not None:  # a shadow: its copies stop first
        router.remove_mirror()
    if leftovers:
        placement.remove_canaries(h, name)
    refresh_quietly(h.docker())
    shadow = routed.get("mirror")
    if shadow is not None:
        deployment = placement.get_deployment(h, name)
        version = version_number(str(shadow.get("version", "")))
        with contextlib.suppress(BackendError):  # a record, never a reason to fail the stop
            h.registry().record_deployment(
                deployment.model,
                name,
                "canary",
                deployment.version,
                version,
                f"shadow v{version} stopped" + (f": {note}" if note else ""),
            )
    return None


# ---------------------------------------------------------------------- acting


def _abort(h: Handles, release: Release) -> str:
    """All traffic back to the stable version (the router drains the canary), then the
    canary container goes, and Prometheus' targets with it. Nothing else of the deployment
    changes. A deployment taken down meanwhile has no router: nothing to send back, only
    containers to remove. Returns what the targets refresh could not do ("" when done)."""
    try:
        router = placement.router_api(h, release.deployment)
    except NotFound:
        # Taken down meanwhile. A router that is there but does not answer (a swarm router's
        # task restarting) raises instead: the abort is tried again, since a router that
        # comes back restores its table, canary included, and must be told first.
        router = None
    if router is not None:
        router.remove_canary()
    placement.remove_canaries(h, release.deployment)
    return refresh_quietly(h.docker())


def _promote(h: Handles, release: Release, decision: Decision) -> str:
    """The canary version becomes the stable one. A deployment that follows an alias has the
    alias moved (through the promotion gate, the analysis in the history's reason) and its
    server reloads it; a pinned one gets a container of the canary version switched in as
    any deploy (labelled with no alias: the alias still names the old version). Once that is
    done the release is promoted whatever follows; the cleanup (the canary drained and
    removed, Prometheus' targets) returns what it could not do, for the release's problem."""
    name = release.deployment
    problems = []
    if release.follow_alias and release.alias:
        h.registry().promote(
            release.model,
            release.canary_version,
            alias=release.alias,
            reason=f"canary analysis of {name}: {decision.line}",
        )
        try:
            _wait_serving(h, name, release.canary_version)
        except BackendError as exc:
            problems.append(exc.message)
    else:
        version = h.registry().resolve(f"{release.model}/{release.canary_version}")
        switch_in(h, name, version, "canary")
    try:
        if targets := _abort(h, release):
            problems.append(targets)
    except BackendError as exc:
        problems.append(
            f"the canary is not removed yet ({exc.message}): "
            f"mlops deploy canary {name} --abort removes it"
        )
        # The switched-in version's labels at least: the canary's target goes with --abort.
        if targets := refresh_quietly(h.docker()):
            problems.append(targets)
    return "; ".join(problems)


def _wait_serving(h: Handles, name: str, version: int, timeout: float = 180.0) -> None:
    """Until the deployment's serving container says it serves ``version`` (a follow-alias
    server reloads within its follow interval)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = containers.active_model(h.docker(), name)
        port = active.labels.get(f"{LABEL}.port", "") if active is not None else ""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            info = httpx.get(f"{url_on(h.docker(), port)}/version", timeout=2).json()
            if version_number(str(info.get("version"))) == version:
                return
        time.sleep(1.0)
    raise BackendError(
        f"deployment {name!r} did not reload v{version} within {timeout:.0f} s after its alias"
        " moved",
        title="Promotion incomplete",
    )


# ---------------------------------------------------------------------- helpers


def _prometheus(url: str) -> Any:
    from backends.prometheus.prometheus_source import PrometheusSource

    return PrometheusSource(url, timeout=5.0)


def _prometheus_figures(release: Release, seconds: float) -> dict[str, dict[str, float | None]]:
    """Both versions' figures over the last ``seconds`` from Prometheus (Unavailable when it
    does not answer)."""
    from backends.prometheus.queries import Scope

    source = _prometheus(release.prometheus_url)
    figures: dict[str, dict[str, float | None]] = {}
    try:
        for role in ("canary", "stable"):
            version = release.canary_version if role == "canary" else release.stable_version
            scope = Scope(
                deployment=release.deployment,
                version=str(version or ""),
                role="canary" if role == "canary" else None,  # else: what the router serves
            )
            measured = figures_from_prometheus(
                source.vector, scope, seconds, min_requests=MIN_REQUESTS
            )
            figures[role] = measured.values()
    finally:
        source.close()
    return figures


def _await_first_scrape(
    release: Release, sleep: Callable[[float], None], timeout: float = 60.0
) -> None:
    """Until Prometheus has scraped the canary (its file_sd target is read within seconds,
    then scraped at its interval): a first window with no sample of it would find no figure
    and pause the release. After ``timeout`` the analysis starts anyway; a canary Prometheus
    still does not see is then inconclusive, and the problem says why. A Prometheus that does
    not answer is not waited for: the first evaluation pauses, saying so."""
    from backends.prometheus.queries import Scope

    source = _prometheus(release.prometheus_url)
    scope = Scope(deployment=release.deployment, version=str(release.canary_version), role="canary")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                if source.targets_up(scope):
                    return
            except BackendError:
                return
            sleep(0.5)
    finally:
        source.close()
    _note_problem(
        release.deployment,
        f"Prometheus at {release.prometheus_url} has not scraped the canary "
        f"(deployment={release.deployment}, version={release.canary_version}) after "
        f"{timeout:.0f} s: is its file_sd reading {default_targets_path()}?",
    )


def _scrapes(h: Handles, release: Release) -> dict[str, str | None]:
    """Both model servers' /metrics now (None for one that does not answer); nothing when
    the figures come from Prometheus."""
    if release.prometheus_url:
        return {}
    if h.engine == "swarm":
        # The tasks are on the overlay: their /metrics, together, through the router.
        api = placement.router_api(h, release.deployment)
        return {"canary": api.metrics(canary=True), "stable": api.metrics()}
    active = containers.active_model(h.docker(), release.deployment)
    stable_port = active.labels.get(f"{LABEL}.port", "") if active is not None else ""
    ports = {"canary": str(release.canary_port), "stable": stable_port}
    texts: dict[str, str | None] = {}
    for role, port in ports.items():
        texts[role] = None
        if port:
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(f"{url_on(h.docker(), port)}/metrics", timeout=5)
                if response.status_code == 200:
                    texts[role] = response.text
    return texts


def _history(h: Handles, release: Release, line: str) -> None:
    """The deployment's history entry; a registry that does not answer is said in the
    release's problem, never a reason to stop the release."""
    try:
        h.registry().record_deployment(
            release.model,
            release.deployment,
            "canary",
            release.stable_version,
            release.canary_version,
            line,
        )
    except BackendError as exc:
        release.problem = f"not in the history: {exc.message}"


def _who(h: Handles) -> str:
    from backends.identity import current_user

    return current_user()


def _must(name: str) -> Release:
    release = read_release(name)
    if release is None:
        raise NotFound(f"no canary release of {name!r} here (start one: mlops deploy canary)")
    return release


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not reaped) is gone
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
        # A pid taken again by another program (after a reboot) is not our worker.
        return b"canary_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
