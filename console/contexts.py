"""Named contexts, kubectl- and k9s-style: ``~/.config/mlops-console/config.toml``.

A context names the systems one environment runs (the tracking server and its TLS settings,
the Docker host, Prometheus, Alertmanager, model servers to watch), how to present it
(read-only, theme) and which environment variables hold its credentials: the file names
variables, never secrets.

Using a context means putting its settings into this process's environment, under the
variables every part already reads (``MLFLOW_TRACKING_URI``, ``DOCKER_HOST``, MLflow's token
and TLS variables, ...): the MLflow SDK, our backends, and the processes we start (a training,
a follow-alias container's settings) then agree without each being told. A variable already set
in the environment wins over the file (the documented order), and switching contexts in the
console takes back exactly what the previous context put there.

    current_context = "staging"

    [contexts.staging]
    tracking_uri = "https://mlflow.staging.example.com"
    prometheus_url = "http://prometheus.staging:9090"
    credentials = { MLFLOW_TRACKING_TOKEN = "STAGING_MLFLOW_TOKEN" }

    [contexts.prod]          # read-only unless it says read_only = false
    tracking_uri = "https://mlflow.example.com"
    docker_host = "ssh://ops@serve-1"
"""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backends.defaults import ENGINES
from backends.errors import InvalidInput

__all__ = [
    "CONFIG_ENV",
    "SETTING_VARIABLES",
    "Activation",
    "Context",
    "ContextConfig",
    "activate",
    "config_path",
    "load_config",
    "original_environment",
    "set_current",
]

CONFIG_ENV = "MLOPS_CONFIG"  # another config file (several configs, tests)
CONTEXT_ENV = "MLOPS_CONTEXT"
BUILTIN = "local"  # the context with no file: the embedded defaults

# A context's settings and the variable each one sets. Keys are the file's spelling.
SETTING_VARIABLES: dict[str, str] = {
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "registry_uri": "MLFLOW_REGISTRY_URI",
    "ca_cert": "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "client_cert": "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "insecure_tls": "MLFLOW_TRACKING_INSECURE_TLS",
    "docker_host": "DOCKER_HOST",
    "engine": "MLOPS_ENGINE",  # "docker" (one engine's containers) or "swarm" (services)
    "image_registry": "MLOPS_IMAGE_REGISTRY",  # host:port that `image push` and swarms use
    "prometheus_url": "PROMETHEUS_URL",
    "alertmanager_url": "ALERTMANAGER_URL",
    "monitor_targets": "MLOPS_MONITOR_TARGETS",
    "read_only": "MLOPS_READ_ONLY",
    "theme": "MLOPS_THEME",
}
_BOOLEANS = {"insecure_tls", "read_only"}
_LISTS = {"monitor_targets"}
# Environment variable names as people write them: upper case. A token pasted where a name
# belongs is refused (and never echoed) rather than taken for a strangely named variable.
_VARIABLE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def config_path() -> Path:
    """``$MLOPS_CONFIG``, else ``$XDG_CONFIG_HOME/mlops-console/config.toml``."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlops-console" / "config.toml"


@dataclass(frozen=True)
class Context:
    """One named environment: its settings (file spelling → value as text) and credentials
    (a variable MLflow or an SDK reads → the name of the variable holding the secret)."""

    name: str
    settings: Mapping[str, str] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)
    defined: bool = True  # False: a name with no entry in the file (a label, as before)

    @property
    def read_only(self) -> bool:
        """As the file says; a context named prod* is read-only unless it says otherwise."""
        if "read_only" in self.settings:
            return self.settings["read_only"] == "1"
        return self.defined and self.name.lower().startswith("prod")

    def variables(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The variables this context sets, credentials read from the variables they name
        (a named variable that is unset sets nothing: its absence shows as an auth error)."""
        out = {SETTING_VARIABLES[key]: value for key, value in self.settings.items()}
        if self.read_only:
            out["MLOPS_READ_ONLY"] = "1"
        for target, source in self.credentials.items():
            if environ.get(source):
                out[target] = environ[source]
        return out


@dataclass(frozen=True)
class ContextConfig:
    """The config file as read: which context is current, and every context in it."""

    path: Path
    current: str | None
    contexts: Mapping[str, Context]

    def chosen(self, name: str | None = None) -> str:
        """Which context is in use: ``name`` (``--context``), else $MLOPS_CONTEXT, else the
        file's current_context, else ``local``."""
        return name or os.environ.get(CONTEXT_ENV) or self.current or BUILTIN

    def get(self, name: str) -> Context:
        """The context ``name``; without a file, any name is a label over the defaults."""
        if name in self.contexts:
            return self.contexts[name]
        if not self.contexts or name == BUILTIN:
            return Context(name, defined=False)
        known = ", ".join(sorted(self.contexts))
        raise InvalidInput(
            f"no context {name!r} in {self.path} (contexts: {known}); "
            "`mlops context list` shows them",
            title="Unknown context",
        )


def load_config(path: Path | None = None) -> ContextConfig:
    """Read and check the config file; a missing file is an empty config. A bad file is
    InvalidInput naming the file and the key."""
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ContextConfig(path, None, {})
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", title="Config") from exc
    try:
        doc = tomllib.loads(raw.decode("utf-8-sig"))  # an editor's byte-order mark is fine
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"{path} is not valid TOML: {exc}", title="Config") from exc
    unknown = set(doc) - {"current_context", "contexts"}
    if unknown:
        _bad(path, f"unknown top-level key {sorted(unknown)[0]!r} (current_context, contexts)")
    current = doc.get("current_context")
    if current is not None and not isinstance(current, str):
        _bad(path, "current_context must be a string")
    tables = doc.get("contexts", {})
    if not isinstance(tables, dict):
        _bad(path, "[contexts] must be a table of tables ([contexts.NAME])")
    contexts = {name: _context(path, name, table) for name, table in tables.items()}
    # A current_context naming no context (one deleted since) is refused when it is used, not
    # here: `mlops context list` and `use` must still work to mend it.
    return ContextConfig(path, current or None, contexts)


def _bad(path: Path, what: str) -> None:
    raise InvalidInput(f"{path}: {what}", title="Config")


def _context(path: Path, name: str, table: object) -> Context:
    where = f"[contexts.{name}]"
    if not _NAME.match(name):
        _bad(path, f"{where}: a context name is letters, digits, '.', '-' and '_'")
    if not isinstance(table, dict):
        _bad(path, f"{where} must be a table")
        raise AssertionError  # for the type checker: _bad raised
    settings: dict[str, str] = {}
    credentials: dict[str, str] = {}
    for key, value in table.items():
        if key == "credentials":
            credentials = _credentials(path, where, value)
        elif key not in SETTING_VARIABLES:
            known = ", ".join([*SETTING_VARIABLES, "credentials"])
            _bad(path, f"{where}: unknown key {key!r} (known: {known})")
        elif key in _BOOLEANS:
            if not isinstance(value, bool):
                _bad(path, f"{where}: {key} must be true or false")
            settings[key] = "1" if value else "0"
        elif key in _LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                _bad(path, f"{where}: {key} must be a list of strings")
            settings[key] = ",".join(value)
        else:
            if not isinstance(value, str) or not value.strip():
                _bad(path, f"{where}: {key} must be a non-empty string")
            if key == "engine" and value.strip() not in ENGINES:
                _bad(path, f"{where}: engine must be one of {', '.join(ENGINES)}, not {value!r}")
            settings[key] = value.strip()
    return Context(name, settings, credentials)


def _credentials(path: Path, where: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        _bad(path, f'{where}: credentials must be a table of VARIABLE = "ENV_VAR_NAME"')
        raise AssertionError
    out: dict[str, str] = {}
    for target, source in value.items():
        if not _VARIABLE.match(target):
            _bad(path, f"{where}: credentials key {target!r} is not a variable name")
        if not isinstance(source, str) or not _VARIABLE.match(source):
            # What a pasted token looks like: say so without echoing it.
            _bad(
                path,
                f"{where}: credentials.{target} must name the environment variable that holds "
                'the secret (e.g. "PROD_MLFLOW_TOKEN"), never the secret itself',
            )
        out[target] = source
    return out


@dataclass(frozen=True)
class Activation:
    """A context put into the environment: what it set, and what the environment kept."""

    context: Context
    applied: Mapping[str, str]  # variable → value this activation set
    overridden: tuple[str, ...]  # variables the context names but the environment already had

    def warning(self) -> str:
        """What the environment overrode, for one line on stderr ("" when nothing)."""
        if not self.overridden:
            return ""
        names = ", ".join(self.overridden)
        text = f"the environment's {names} override context {self.context.name}'s"
        if self.context.credentials and {"MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"} & set(
            self.overridden
        ):
            text += " (its credentials are not sent to the environment's server)"
        return text


# What the active context put into os.environ: a switch takes back exactly these (a variable
# the user set, or changed since, is theirs and stays).
_applied: dict[str, str] = {}
_LOCK = threading.Lock()  # one activation at a time (the console switches in a worker thread)
_replaced: dict[str, str] = {}  # MLOPS_CONTEXT's own value, when a --context or :ctx replaced it


def original_environment() -> dict[str, str]:
    """os.environ as it was before any context was put into it (what `context show` calls
    "environment")."""
    env = {k: v for k, v in os.environ.items() if _applied.get(k) != v}
    env.update(_replaced)
    return env


def activate(name: str | None = None, *, path: Path | None = None) -> Activation:
    """Choose a context (``name``, else $MLOPS_CONTEXT, else the file's current_context, else
    ``local``) and put its settings into os.environ under the variables not already set there.
    Calling it again (the console's ``:ctx``) first takes back what the last call set."""
    with _LOCK:
        return _activate(name, path)


def _activate(name: str | None, path: Path | None) -> Activation:
    config = load_config(path)
    env = os.environ
    for variable, value in _applied.items():
        if env.get(variable) == value:
            del env[variable]
    env.update(_replaced)
    _applied.clear()
    _replaced.clear()
    chosen = config.chosen(name)
    context = config.get(chosen)
    applied: dict[str, str] = {}
    overridden: list[str] = []
    wanted = context.variables(env)
    servers = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    if any(v in env and v in wanted and env[v] != wanted[v] for v in servers):
        # The environment points at another server than the context's: the context's
        # credentials are for its own servers and are not sent elsewhere.
        for target in context.credentials:
            wanted.pop(target, None)
    for variable, value in wanted.items():
        if variable in env:
            if env[variable] != value:
                overridden.append(variable)
            continue
        env[variable] = value
        applied[variable] = value
    if env.get(CONTEXT_ENV) != chosen:
        # Processes we start (a training, a hook's retraining) use the same context.
        if CONTEXT_ENV in env:
            _replaced[CONTEXT_ENV] = env[CONTEXT_ENV]
        env[CONTEXT_ENV] = chosen
        applied[CONTEXT_ENV] = chosen
    _applied.update(applied)
    return Activation(context, applied, tuple(overridden))


def set_current(name: str, path: Path | None = None) -> Path:
    """Make ``name`` the file's current context, every other line kept as it is (comments,
    line endings), written atomically through a symlink to its target, and checked to read
    back before it replaces the file. The name must be one of the file's contexts."""
    config = load_config(path)
    if name not in config.contexts:
        config.get(name)  # the error that names the known ones
        raise InvalidInput(
            f"no contexts in {config.path}: add a [contexts.{name}] table first",
            title="Unknown context",
        )
    target = config.path.resolve()
    with open(target, encoding="utf-8-sig", newline="") as f:
        text = f.read()
    newline = "\r\n" if "\r\n" in text else "\n"
    line = f'current_context = "{name}"'
    # Only among the top-level keys: before the first table header.
    header = re.search(r"^\s*\[", text, re.MULTILINE)
    top, rest = (text[: header.start()], text[header.start() :]) if header else (text, "")
    key = re.compile(r'^[ \t]*["\']?current_context["\']?[ \t]*=[^\r\n]*', re.MULTILINE)
    top = key.sub(line, top, count=1) if key.search(top) else f"{line}{newline}{top}"
    updated = top + rest
    try:
        reread = tomllib.loads(updated)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{config.path}: cannot set current_context here ({exc})") from exc
    if reread.get("current_context") != name:
        raise InvalidInput(
            f"{config.path}: its current_context is written in a way this cannot change; "
            f'set current_context = "{name}" by hand',
            title="Config",
        )
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(updated)
    os.replace(tmp, target)
    return config.path
