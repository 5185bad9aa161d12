"""An MLflow Project's entry point, read and filled in the way ``mlflow run`` reads it.

We run a project's entry point ourselves (see ``training``) instead of through MLflow's runner,
whose process exists only to import MLflow (~2 s), create the run and start the entry point.
What it does with the MLproject file is small and documented, and kept here to the letter:
parameters ``name: type`` or ``name: {type, default}``; a parameter without a default must be
given; values are shell-quoted into ``command.format(...)``; parameters the entry point does
not declare are appended as ``--key value``; a ``path`` parameter given as a local path must
exist and becomes absolute; a ``uri`` parameter must have a scheme. The environment sections
(python_env, conda_env, docker_env) are not ours to build: we run in the console's own pinned
environment, as ``mlflow run --env-manager local`` does.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from backends.errors import InvalidInput

__all__ = ["EntryPoint", "load_entry_point"]


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str | None


@dataclass(frozen=True)
class EntryPoint:
    project_dir: Path
    name: str
    command: str
    parameters: tuple[Parameter, ...]

    def resolved(self, given: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(declared parameters with defaults filled in, undeclared extras), as MLflow logs
        them: the values as given (a path as written, not made absolute)."""
        missing = [p.name for p in self.parameters if p.name not in given and p.default is None]
        if missing:
            names = ", ".join(f"'{name}'" for name in missing)
            raise InvalidInput(f"no value given for the project's parameters: {names}")
        declared = {p.name: given.get(p.name, p.default) or "" for p in self.parameters}
        for p in self.parameters:
            if p.type == "uri" and not urlparse(declared[p.name]).scheme:
                raise InvalidInput(f"parameter {p.name} takes a URI, not {declared[p.name]!r}")
        extras = {key: value for key, value in given.items() if key not in declared}
        return declared, extras

    def shell_command(self, given: dict[str, str]) -> str:
        """The command line to run in the project directory (``bash -c``)."""
        declared, extras = self.resolved(given)
        values = {}
        for p in self.parameters:
            value = declared[p.name]
            if p.type == "path":
                value = self._local_path(p.name, value)
            values[p.name] = shlex.quote(str(value))
        try:
            command = self.command.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidInput(
                f"entry point {self.name!r} of {self.project_dir / 'MLproject'}: its command "
                f"names a parameter it does not declare ({exc})"
            ) from exc
        tail = [f"--{shlex.quote(key)} {shlex.quote(value)}" for key, value in extras.items()]
        return " ".join([command, *tail])

    def _local_path(self, name: str, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("", "file"):
            # MLflow's runner would download it first; our runs take local files only.
            raise InvalidInput(
                f"parameter {name} is a path: give a local file, not {value!r} "
                "(download it first, or declare the parameter as a uri)"
            )
        local = parsed.path if parsed.scheme == "file" else value
        if not os.path.exists(local):
            raise InvalidInput(f"parameter {name}: no such file or directory {value!r}")
        return os.path.abspath(local)


def load_entry_point(project_dir: Path, name: str = "main") -> EntryPoint:
    """The entry point ``name`` of the MLproject file in ``project_dir``."""
    import yaml  # a dependency of mlflow's; only training reads MLproject files

    path = project_dir / "MLproject"
    try:
        spec: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InvalidInput(f"{project_dir} is not an MLflow Project (no MLproject file)") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from exc
    points = (spec or {}).get("entry_points") if isinstance(spec, dict) else None
    if not isinstance(points, dict) or name not in points:
        raise InvalidInput(f"{path} has no entry point {name!r}")
    point = points[name] or {}
    command = point.get("command") if isinstance(point, dict) else None
    if not isinstance(command, str) or not command.strip():
        raise InvalidInput(f"entry point {name!r} of {path} has no command")
    parameters = []
    for key, raw in (point.get("parameters") or {}).items():
        # MLflow accepts `name: type` and `name: {type: ..., default: ...}`.
        fields = raw if isinstance(raw, dict) else {"type": str(raw)}
        default = fields.get("default")
        kind = str(fields.get("type", "string"))
        parameters.append(Parameter(str(key), kind, None if default is None else str(default)))
    return EntryPoint(project_dir, name, command, tuple(parameters))
