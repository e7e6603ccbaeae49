"""A workload: one container's spec as Kubernetes needs it, from a record or a tree file.

A record's command is already resolved (the image's Entrypoint and Cmd applied), so it becomes
Kubernetes' ``command``. A tree file says what Docker's ``run`` says: ``command`` replaces the
image's Cmd (Kubernetes' ``args``) and ``entrypoint`` its Entrypoint (``command``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._runtime._bundle import INIT_PATH
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


_POD_NETWORK = ("ports", "dns", "dns_search", "dns_option", "add_host")  # what an infra holds


def pods_of(records: Sequence[Record], prefix: str = "") -> list[tuple[str, list[Workload]]]:
    """Containers as Pods: those that joined another's network (``container:NAME``, as ``kube
    play`` runs a Pod's containers) go into their owner's Pod, without the owner when it is a
    Pod's infra container (``catatonit -P``: its published ports and DNS settings go to the
    Pod's first container); any other container is a Pod of its own. Pod and container names
    lose *prefix* (a tree's), and joiners the Pod's name too."""
    names = {r.name for r in records}
    joiners: dict[str, list[Record]] = {}
    for r in records:
        owner = r.spec.network.removeprefix("container:")
        if r.spec.network.startswith("container:") and owner in names and owner != r.name:
            joiners.setdefault(owner, []).append(r)
    joined = {r.name for rs in joiners.values() for r in rs}
    pods: list[tuple[str, list[Workload]]] = []
    for r in records:
        if r.name in joined:
            continue
        members = joiners.get(r.name, [])
        if not members:
            pods.append((r.name.removeprefix(prefix), [from_record(r)]))
            continue
        infra = list(r.spec.args) == [INIT_PATH, "-P"]
        pod = r.name.removeprefix(prefix).removesuffix("-infra" if infra else "")
        workloads = [] if infra else [dataclasses.replace(from_record(r), name=pod)]
        workloads += [dataclasses.replace(from_record(m), name=m.name.removeprefix(
            prefix).removeprefix(f"{pod}-")) for m in members]
        if infra:
            first = workloads[0]
            workloads[0] = dataclasses.replace(first, spec=dataclasses.replace(
                first.spec, **{k: getattr(r.spec, k) for k in _POD_NETWORK}))
        pods.append((pod, workloads))
    return pods
