"""``carrier up`` and ``down``: declared supervision trees (docs/supervisors.md)."""

from __future__ import annotations

import os
import select
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from .._util._errors import CarrierError
from .._util._signals import FORWARDED
from ._common import in_background, one_line, open_root

if TYPE_CHECKING:
    from .._supervision._treespec import Tree
    from .._util._root import Root


def up(
    file: Path,
    *,
    detach: Annotated[bool, Parameter(name=["-d", "--detach"])] = False,
) -> int:
    """Start a supervision tree declared in a TOML file (see supervisors/); Ctrl-C stops it.

    Parameters
    ----------
    file: Path
        The tree's TOML file.
    detach: bool
        Run the tree in the background; stop it with carrier down FILE.
    """
    import anyio

    from .._supervision._treespec import load

    root = open_root()
    tree = load(file)
    if detach:
        log = root.path / "trees" / f"{tree.name}.log"
        log.parent.mkdir(mode=0o700, exist_ok=True)
        message = in_background(log, lambda fd: anyio.run(_tree_main, root, tree, fd))
        if message != "started":
            raise CarrierError(message or f"tree {tree.name} failed to start")
        print(tree.name)
        return 0
    gave_up = anyio.run(_tree_main, root, tree, None)
    if gave_up:
        print(f"carrier: {gave_up}", file=sys.stderr)
        return 125
    return 0


async def _tree_main(root: Root, tree: Tree, status_fd: int | None) -> str | None:
    """Run the tree until SIGINT/SIGTERM (or every container ended); report start on the fd."""
    import anyio
    from anyio.abc import TaskStatus

    from .._runtime._reaper import become_subreaper, reap_on_sigchld
    from .._supervision._handle import Container
    from .._supervision._tree import up as run_tree
    from .._util._errors import unwrapped

    become_subreaper()  # the runtime need not stay: its container's init is ours (_reaper)

    stop = anyio.Event()
    result: list[str | None] = []
    # Every catchable signal is handled, so that no stray one ends the tree's supervisor
    # without its cleanup: SIGINT and SIGTERM stop the tree (SIGHUP too in the foreground: the
    # terminal went away); the others are ignored.
    stopping = {signal.SIGINT, signal.SIGTERM} | ({signal.SIGHUP} if status_fd is None else set())
    try:
        with anyio.open_signal_receiver(*FORWARDED) as received, unwrapped():
            async with anyio.create_task_group() as tg:

                async def on_signal() -> None:
                    async for sig in received:
                        if sig in stopping:
                            stop.set()

                async def main(*, task_status: TaskStatus[dict[str, Container]]) -> None:
                    result.append(await run_tree(root, tree, stop, task_status=task_status))
                    tg.cancel_scope.cancel()

                tg.start_soon(on_signal)
                tg.start_soon(reap_on_sigchld)  # its groups' networks' supervisors, as they end
                handles = await tg.start(main)
                names = ", ".join(h.name for h in handles.values())
                if status_fd is None:
                    print(f"carrier: {tree.name} is up: {names}", file=sys.stderr, flush=True)
                else:
                    os.write(status_fd, b"started")
                    os.close(status_fd)
                    status_fd = None
    except BaseException as e:
        if status_fd is not None:
            os.write(status_fd, one_line(e).encode())
        raise
    return result[0] if result else None


_KUBE_SUFFIXES = (".yaml", ".yml")  # manifests: their trees are kube play's to stop (and clean)


def down(file: Path) -> int:
    """Stop a tree started with carrier up: its containers at once, each after those that
    depend on it (a tree that kube play started is refused: kube play --down stops it)."""
    from .._supervision._control import pidfd_of
    from .._supervision._tree import state_file
    from .._supervision._treespec import load
    from .._util._atomic import read_json

    root = open_root()
    if file.suffix in _KUBE_SUFFIXES:
        raise CarrierError(f"{file}: started by kube play: stop it with carrier kube play --down {file}")
    tree = load(file)
    state = state_file(root, tree.name)
    try:
        data = read_json(state)
    except FileNotFoundError:
        raise CarrierError(f"tree {tree.name} is not up") from None
    played = Path(data.get("file", ""))
    if played.suffix in _KUBE_SUFFIXES:  # a tree of the same name, which play started
        raise CarrierError(f"tree {tree.name} was started by kube play: stop it with "
                           f"carrier kube play --down {played}")
    fd = pidfd_of(int(data["pid"]), data.get("start"))
    if fd is None:
        state.unlink(missing_ok=True)
        _remove_network(root, tree)  # the reconcile of a killed tree supervisor
        raise CarrierError(f"tree {tree.name} is not up (its supervisor is gone)")
    try:
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        if not select.select([fd], [], [], 600)[0]:
            raise CarrierError(f"tree {tree.name}: its supervisor did not stop in time")
    finally:
        os.close(fd)
    _remove_network(root, tree)
    print(tree.name)
    return 0


def _remove_network(root: Root, tree: Tree) -> None:
    """Remove the tree's own ``<tree>_default`` network, as Compose's down does."""
    from .._supervision._tree import remove_tree_network

    remove_tree_network(root, tree.name, tree.network)
