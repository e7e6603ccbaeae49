"""A workload: one container's spec as Kubernetes needs it, from a record or a tree file.

A record's command is already resolved (the image's Entrypoint and Cmd applied), so it becomes
Kubernetes' ``command``. A tree file says what Docker's ``run`` says: ``command`` replaces the
image's Cmd (Kubernetes' ``args``) and ``entrypoint`` its Entrypoint (``command``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .._state._records import Record, Spec
from .._supervision._treespec import ContainerDecl

_SPEC_FIELDS = {f.name for f in dataclasses.fields(Spec)}
_RENAMED = {"workdir": "cwd"}  # carrier.run's option names that Spec spells otherwise


@dataclass(frozen=True)
class Workload:
    """One container to write out."""

    name: str
    spec: Spec
    command: list[str] | None  # Kubernetes' command: replaces the image's Entrypoint
    args: list[str] | None  # Kubernetes' args: replaces the image's Cmd
    depends_on: dict[str, str] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()  # tree options that have no Spec field


def from_record(record: Record) -> Workload:
    """A container that exists (running or not): its resolved command, as it runs."""
    return Workload(record.name, record.spec, list(record.spec.args), None)


def from_decl(decl: ContainerDecl) -> Workload:
    """A container declared in a tree file: the image's Entrypoint and Cmd stay the image's
    unless the file overrides them."""
    options: dict[str, Any] = {_RENAMED.get(k, k): v for k, v in decl.options.items()}
    entrypoint = options.pop("entrypoint", None)
    known = {k: v for k, v in options.items() if k in _SPEC_FIELDS}
    known.setdefault("env", [])
    known.setdefault("cwd", "")
    known.setdefault("user", "")
    known.setdefault("hostname", "")
    spec = Spec(image=decl.image, image_id="", args=list(decl.command), **known)
    unknown = tuple(sorted(k for k in options if k not in _SPEC_FIELDS))
    return Workload(decl.name, spec, list(entrypoint) if entrypoint is not None else None,
                    list(decl.command) or None, dict(decl.depends_on), unknown)
