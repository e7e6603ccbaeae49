"""``carrier kube``: containers and trees as Kubernetes manifests (Podman's ``kube generate``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from cyclopts import Parameter

from .._util._errors import CarrierError
from ._common import open_root

if TYPE_CHECKING:
    from .._kube._workload import Workload
    from .._state._records import Containers


def generate(
    *targets: str,
    type: Annotated[Literal["pod", "deployment"], Parameter(name=["--type"])] = "pod",
    service: Annotated[bool, Parameter(name=["--service", "-s"])] = False,
    name: str | None = None,
    filename: Annotated[Path | None, Parameter(name=["--filename", "-f"])] = None,
) -> int:
    """Write Kubernetes YAML for containers (one Pod holding them all), or for a supervision
    tree (a tree file, or the name of a tree that is up: one Pod per service, and a Service
    for each one that publishes ports, so that services find each other by name).

    What Kubernetes cannot express is named in a comment and in a warning, never dropped.

    Parameters
    ----------
    targets: str
        Container names or ids, a tree file (FILE.toml), or a tree's name.
    type: Literal["pod", "deployment"]
        The kind to generate: a Pod, or a Deployment with one replica.
    service: bool
        Also generate a Service for the published ports.
    name: str | None
        The Pod's name when containers are given (default: the first container's, plus -pod).
    filename: Path | None
        Write to this file instead of standard output.
    """
    from .._kube._generate import generate as build
    from .._kube._generate import to_yaml

    if not targets:
        raise CarrierError("kube generate needs a container, a tree file or a tree's name")
    groups, services, notes = _groups(list(targets), name)
    manifest = build(groups, kind=type, services=service or services)
    manifest.notes[:0] = notes
    text = to_yaml(manifest)
    for note in manifest.notes:
        print(f"carrier: warning: not expressed in Kubernetes: {note}", file=sys.stderr)
    if filename is None:
        sys.stdout.write(text)
    else:
        from .._util._atomic import write_bytes

        write_bytes(filename, text.encode(), mode=0o644)
    return 0


def _groups(targets: list[str], name: str | None
            ) -> tuple[list[tuple[str, list[Workload]]], bool, list[str]]:
    """The Pods to write, whether Services are implied (a tree's services find each other by
    name, which in Kubernetes takes a Service), and what the tree says that Kubernetes cannot."""
    from .._kube._workload import from_decl, from_record
    from .._state._records import Containers
    from .._supervision._tree import TREE_LABEL
    from .._supervision._treespec import load

    if len(targets) == 1 and targets[0].endswith(".toml"):
        tree = load(Path(targets[0]))
        notes = [f"group {g.name}: the {g.strategy} strategy of {', '.join(g.members)} has no "
                 "Kubernetes form (each Pod restarts on its own)" for g in tree.groups]
        return [(d.name, [from_decl(d)]) for d in tree.containers], True, notes
    containers = Containers(open_root())
    if len(targets) == 1 and not _exists(containers, targets[0]):
        members = [r for r in containers.all() if r.spec.labels.get(TREE_LABEL) == targets[0]]
        if members:
            prefix = f"{targets[0]}-"
            return ([(r.name.removeprefix(prefix), [from_record(r)]) for r in members], True,
                    ["a running tree's depends_on is not stored: generate from its file to keep it"])
    records = [containers.find(t) for t in targets]
    return [(name or f"{records[0].name}-pod", [from_record(r) for r in records])], False, []


def _exists(containers: Containers, ref: str) -> bool:
    from .._util._errors import NotFoundError

    try:
        containers.resolve(ref)
    except NotFoundError:
        return False
    return True
