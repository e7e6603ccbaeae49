"""Declarative supervision trees: a TOML file, validated by a JSON Schema, then checked for
meaning (dependencies exist and do not loop, groups name real containers, images exist).

Every error names the file, the key and the reason, and nothing starts unless the whole file
is valid. The format is in docs/supervisors.md; examples live in ``supervisors/``.
"""

from __future__ import annotations

import graphlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._util._durations import parse_duration
from .._util._errors import CarrierError

_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$"
_STRINGS = {"type": "array", "items": {"type": "string"}}
_DURATION = {"type": ["string", "number"]}

_HEALTH = {
    "type": "object", "additionalProperties": False, "required": ["cmd"],
    "properties": {
        "cmd": {"type": "string", "minLength": 1}, "interval": _DURATION, "timeout": _DURATION,
        "retries": {"type": "integer", "minimum": 1}, "start_period": _DURATION,
        "on_failure": {"enum": ["none", "kill", "restart"]},
    },
}
_CONTAINER = {
    "type": "object", "additionalProperties": False, "required": ["image"],
    "properties": {
        "image": {"type": "string", "minLength": 1}, "command": _STRINGS, "entrypoint": _STRINGS,
        "env": _STRINGS, "workdir": {"type": "string"}, "user": {"type": "string"},
        "hostname": {"type": "string"}, "ports": _STRINGS,
        # auto, pasta, slirp4netns, none, host, or a named network; default: the tree's own
        "network": {"type": "string", "pattern": _NAME},
        "network_aliases": _STRINGS,
        "host_loopback": {"type": "boolean"}, "mtu": {"type": "integer"},
        "dns": _STRINGS, "dns_search": _STRINGS,
        "dns_option": _STRINGS, "add_host": _STRINGS, "restart": {"type": "string"},
        "restart_delay": _DURATION, "restart_max_delay": _DURATION, "restart_period": _DURATION,
        "restart_intensity": {"type": "integer", "minimum": 1},
        "stop_timeout": _DURATION, "health": _HEALTH,
        "pull": {"enum": ["missing", "always", "never"]},
        "storage_driver": {"enum": ["overlay", "fuse-overlayfs", "copy"]},
        # security and resource options, as run's (checked by build_spec)
        "cap_add": _STRINGS, "cap_drop": _STRINGS, "privileged": {"type": "boolean"},
        "security_opt": _STRINGS, "ulimit": _STRINGS, "pids_limit": {"type": "integer"},
        "memory": {"type": ["string", "integer"]}, "cpus": {"type": "number"},
        "depends_on": {
            "type": "object",
            "additionalProperties": {"type": "string", "pattern": r"^(started|healthy|port:\d{1,5})$"},
        },
    },
}
SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["containers"],
    "properties": {
        "name": {"type": "string", "pattern": _NAME},
        "containers": {"type": "object", "minProperties": 1, "propertyNames": {"pattern": _NAME},
                       "additionalProperties": _CONTAINER},
        "groups": {
            "type": "object", "propertyNames": {"pattern": _NAME},
            "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["members"],
                "properties": {
                    "strategy": {"enum": ["one_for_one", "one_for_all", "rest_for_one"]},
                    "members": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "intensity": {"type": "integer", "minimum": 1},
                    "period": _DURATION,
                },
            },
        },
    },
}


@dataclass(frozen=True)
class ContainerDecl:
    """One container of a tree: its options as ``carrier.run`` takes them."""

    name: str
    image: str
    command: list[str]
    options: dict[str, Any]
    depends_on: dict[str, str]
    pull: str = "missing"


@dataclass(frozen=True)
class GroupDecl:
    """Containers supervised together by one strategy."""

    name: str
    strategy: str
    members: list[str]
    intensity: int = 5
    period: float = 10.0


@dataclass(frozen=True)
class Tree:
    """A validated tree: containers in start order, and their groups."""

    name: str
    path: Path
    containers: list[ContainerDecl]
    groups: list[GroupDecl] = field(default_factory=list)

    def container_name(self, member: str) -> str:
        """The container name a member gets: ``<tree>-<member>``."""
        return f"{self.name}-{member}"

    @property
    def network(self) -> str:
        """The tree's own network, where its containers find each other by their names in the
        file (Compose's ``<project>_default``)."""
        return f"{self.name}_default"


def _where(path: Path, keys: Any) -> str:
    return f"{path}: {'.'.join(str(k) for k in keys) or '(top level)'}"


def _options(name: str, raw: dict[str, Any], path: Path) -> dict[str, Any]:
    options = {k: v for k, v in raw.items()
               if k not in ("image", "command", "depends_on", "health", "pull")}
    for key in ("stop_timeout", "restart_delay", "restart_max_delay", "restart_period"):
        if key in options:
            try:
                options[key] = parse_duration(options[key], key, positive=key == "restart_period")
            except CarrierError as e:
                raise CarrierError(f"{_where(path, ['containers', name, key])}: {e}") from None
    if (health := raw.get("health")) is not None:
        try:
            options.update(
                health_cmd=health["cmd"],
                health_interval=parse_duration(health.get("interval", "30s"), "interval",
                                               positive=True),
                health_timeout=parse_duration(health.get("timeout", "30s"), "timeout", positive=True),
                health_retries=health.get("retries", 3),
                health_start_period=parse_duration(health.get("start_period", "0s"), "start_period"),
                health_on_failure=health.get("on_failure", "none"),
            )
        except CarrierError as e:
            raise CarrierError(f"{_where(path, ['containers', name, 'health'])}: {e}") from None
    return options


def load(path: Path) -> Tree:
    """Read and validate a tree file; raise :class:`CarrierError` naming file, key and reason."""
    import jsonschema

    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise CarrierError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise CarrierError(f"{path}: invalid TOML: {e}") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data))
    if error is not None:
        raise CarrierError(f"{_where(path, error.absolute_path)}: {error.message}")
    declared = data["containers"]
    containers = {
        name: ContainerDecl(name, raw["image"], list(raw.get("command", [])),
                            _options(name, raw, path), dict(raw.get("depends_on", {})),
                            raw.get("pull", "missing"))
        for name, raw in declared.items()
    }
    for c in containers.values():
        for dep in c.depends_on:
            if dep not in containers:
                raise CarrierError(f"{_where(path, ['containers', c.name, 'depends_on', dep])}: "
                                   f"no container {dep!r} in this file")
    try:
        order = list(graphlib.TopologicalSorter(
            {name: list(c.depends_on) for name, c in containers.items()}
        ).static_order())
    except graphlib.CycleError as e:
        raise CarrierError(f"{_where(path, ['containers'])}: depends_on loops: "
                           f"{' -> '.join(e.args[1])}") from None
    groups = []
    grouped: dict[str, str] = {}
    for gname, raw in data.get("groups", {}).items():
        for i, member in enumerate(raw["members"]):
            where = _where(path, ["groups", gname, "members", i])
            if member not in containers:
                raise CarrierError(f"{where}: no container {member!r} in this file")
            if member in grouped:
                raise CarrierError(f"{where}: {member!r} is already in group {grouped[member]!r}")
            grouped[member] = gname
        try:
            period = parse_duration(raw.get("period", 10.0), "period", positive=True)
        except CarrierError as e:
            raise CarrierError(f"{_where(path, ['groups', gname, 'period'])}: {e}") from None
        groups.append(GroupDecl(gname, raw.get("strategy", "one_for_one"), list(raw["members"]),
                                raw.get("intensity", 5), period))
    name = data.get("name") or path.stem
    if not re.match(_NAME, name):
        raise CarrierError(f"{_where(path, ['name'])}: {name!r} is not a valid name")
    return Tree(name, path, [containers[n] for n in order], groups)
