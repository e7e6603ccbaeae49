"""``carrier kube``: containers and trees as Kubernetes manifests (Podman's ``kube generate``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from cyclopts import Parameter

from .._util._errors import CarrierError
from ._common import in_background, open_root

if TYPE_CHECKING:
    from .._kube._workload import Workload
    from .._state._records import Containers
    from .._util._root import Root


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
    from .._kube._workload import from_decl, pods_of
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
            return (pods_of(members, prefix), True,
                    ["a running tree's depends_on is not stored: generate from its file to keep it"])
    records = [containers.find(t) for t in targets]
    pods = pods_of(records)
    if len(pods) == 1 and name is None and len(pods[0][1]) < len(records):  # a Pod, as kube
        return pods, False, []  # play ran it (its infra container left out)
    return [(name or f"{records[0].name}-pod", [w for _, ws in pods for w in ws])], False, []


def _exists(containers: Containers, ref: str) -> bool:
    from .._util._errors import NotFoundError

    try:
        containers.resolve(ref)
    except NotFoundError:
        return False
    return True


def play(
    file: Path,
    *,
    down: bool = False,
    ignore_unsupported: bool = False,
) -> int:
    """Run Kubernetes manifests (Pods, Deployments, Services, ConfigMaps, Secrets,
    PersistentVolumeClaims) as a supervision tree in the background, named after the file;
    ``--down`` stops it and removes what it made (named volumes stay).

    Parameters
    ----------
    file: Path
        The manifests (multi-document YAML).
    down: bool
        Stop the tree and remove its containers, network and files.
    ignore_unsupported: bool
        Warn about kinds, fields and values Carrier cannot run instead of refusing them.
    """
    import anyio

    from .._kube._manifests import load
    from .._kube._play import plan, tree_name
    from .._supervision._tree import state_file
    from .._util._atomic import held
    from ._trees import _tree_main

    root = open_root()
    name = tree_name(file)
    files = root.path / "trees" / f"{name}.kube"
    if down:
        _down(root, name, files)
        print(name)
        return 0
    manifests = load(file)
    _refuse(manifests.unsupported, ignore_unsupported)
    result = plan(manifests, file, files)
    _refuse(result.unsupported, ignore_unsupported)
    for line in [*manifests.unsupported, *result.unsupported, *result.warnings]:
        print(f"carrier: warning: {line}", file=sys.stderr)
    if held(state_file(root, name).with_suffix(".lock")):
        raise CarrierError(f"tree {name} is already up (carrier kube play --down {file})")
    network_existed = _network_exists(root, result.tree.network)
    _write_files(files, result.files)
    log = root.path / "trees" / f"{name}.log"
    message = in_background(log, lambda fd: anyio.run(_tree_main, root, result.tree, fd))
    if message != "started":  # nothing it stored stays
        _remove_files(files)
        _forget(state_file(root, name))
        if not network_existed:
            _remove_network(root, result.tree.name, result.tree.network)
        raise CarrierError(message or f"tree {name} failed to start")
    print(name)
    return 0


def _refuse(unsupported: list[str], ignore: bool) -> None:
    """Refuse what Carrier cannot run, in one line naming the first (and how many more)."""
    if unsupported and not ignore:
        more = f" (and {len(unsupported) - 1} more)" if len(unsupported) > 1 else ""
        raise CarrierError(f"not supported: {unsupported[0]}{more}; "
                           "--ignore-unsupported runs the rest")


def _forget(state: Path) -> None:
    """Remove a stopped tree's state, lock and log files (the lock only when no supervisor
    holds it)."""
    from .._util._atomic import try_lock

    state.unlink(missing_ok=True)
    try:
        lock = try_lock(state.with_suffix(".lock"), create=False)
    except FileNotFoundError:
        lock = None
    if lock is not None:
        state.with_suffix(".lock").unlink(missing_ok=True)
        os.close(lock)
    state.with_suffix(".log").unlink(missing_ok=True)


def _network_exists(root: Root, name: str) -> bool:
    from .._state._networks import Networks

    return Networks(root).exists(name)


def _write_files(files: Path, content: dict[str, tuple[bytes, int]]) -> None:
    """The ConfigMap, Secret and emptyDir files, written whole into a fresh directory that
    then replaces the old one, so a container never sees a half-written set."""
    import os
    import tempfile

    from .._util._atomic import write_bytes
    from .._util._fs import remove_tree

    files.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{files.name}.", dir=files.parent))
    try:
        os.chmod(staging, 0o755)
        for rel, (data, mode) in sorted(content.items()):
            target = staging / rel
            if not target.resolve().is_relative_to(staging.resolve()):  # a second guard
                raise CarrierError(f"kube play: file {rel!r} would be written outside its directory")
            if rel.endswith("/"):
                target.mkdir(mode=mode, parents=True, exist_ok=True)
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            write_bytes(target, data, mode=mode)
        remove_tree(files)
        staging.rename(files)
    except BaseException:
        remove_tree(staging)
        raise


def _remove_files(files: Path) -> None:
    from .._util._fs import remove_tree

    remove_tree(files)


def _remove_network(root: Root, tree: str, name: str) -> None:
    """Remove the network the tree made, once unused and its supervisor gone (as ``down``)."""
    from .._supervision._tree import remove_tree_network

    remove_tree_network(root, tree, name)


def _down(root: Root, name: str, files: Path) -> None:
    """Stop the tree's supervisor (its containers at once, each after those that depend on
    it), then remove its containers (in parallel), its network and its files."""
    import select
    import signal

    import anyio

    from .._state._records import Containers
    from .._supervision._control import pidfd_of, remove
    from .._supervision._tree import TREE_LABEL, state_file
    from .._util._atomic import read_json

    state = state_file(root, name)
    try:
        data = read_json(state)
    except FileNotFoundError:
        data = None
    fd = pidfd_of(int(data["pid"]), data.get("start")) if data else None
    if fd is not None:
        try:
            signal.pidfd_send_signal(fd, signal.SIGTERM)
            if not select.select([fd], [], [], 600)[0]:
                raise CarrierError(f"tree {name}: its supervisor did not stop in time")
        finally:
            os.close(fd)
    _forget(state)
    containers = Containers(root)
    made = [r.id for r in containers.all() if r.spec.labels.get(TREE_LABEL) == name]

    failed: list[str] = []

    async def remove_one(cid: str) -> None:
        try:
            await remove(root, cid)
        except CarrierError as e:  # the others are still removed; all failures named at the end
            failed.append(str(e))

    async def remove_all() -> None:  # each on its own: none depends on another once stopped
        async with anyio.create_task_group() as tg:
            for cid in made:
                tg.start_soon(remove_one, cid)

    anyio.run(remove_all)
    if failed:
        raise CarrierError("; ".join(sorted(failed)))
    _remove_network(root, name, f"{name}_default")
    _remove_files(files)
