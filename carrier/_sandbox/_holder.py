"""The holder: a tiny process that owns a container's namespaces before the command runs.

The holder is created first, so that its namespaces exist while nothing runs in them yet: the
network helper attaches to the holder (runc's own init is non-dumpable and cannot be attached
to), and the OCI runtime joins the holder's namespaces by path.

The holder is ``cat`` reading a pipe whose only writer is the supervisor. When the supervisor
exits for any reason, SIGKILL included, the pipe closes and the holder ends: no parent-death
signal, and no fork/prctl race.
"""

from __future__ import annotations

import os
import subprocess
from typing import final

import anyio

from .._util import _process
from .._util._errors import RuntimeFailure
from ._enter import enter_argv
from ._idmap import IdRange, id_maps


@final
class Holder:
    """A running holder process. Built only by :func:`start_holder`."""

    def __init__(self, child: _process.Child, *, userns: bool, netns: bool, mountns: bool,
                 uid_map: list[IdRange], gid_map: list[IdRange]) -> None:
        self.child = child
        self.pid = child.pid
        self.userns = userns
        self.netns = netns
        self.mountns = mountns
        self.uid_map = uid_map
        self.gid_map = gid_map

    def enter_argv(self, *, mount: bool = True) -> list[str]:
        """``nsenter`` into this holder's user namespace (if it has one) and, with *mount*,
        its mount namespace."""
        return enter_argv(self.pid, userns=self.userns, mount=mount)

    def ns_path(self, kind: str) -> str:
        """``/proc/<holder>/ns/<kind>``, the path the runtime joins."""
        return f"/proc/{self.pid}/ns/{kind}"

    async def stop(self) -> None:
        """End the holder and reap it. **Cancellation:** shielded."""
        with anyio.CancelScope(shield=True):
            stdin = self.child.popen.stdin
            if stdin is not None and not stdin.closed:
                stdin.close()
            await self.child.kill()


def holder_maps() -> tuple[list[IdRange], list[IdRange], bool]:
    """The id maps a new user namespace gets (the user's subordinate ranges when it has them,
    else its own ids alone), and whether newuidmap writes them."""
    uid_map, gid_map = id_maps(os.getuid(), os.getgid())
    use_newuidmap = os.geteuid() != 0 and len(uid_map) > 1 and len(gid_map) > 1
    if not use_newuidmap and os.geteuid() != 0:
        uid_map, gid_map = uid_map[:1], gid_map[:1]
    return uid_map, gid_map, use_newuidmap


async def start_holder(*, userns: bool, netns: bool, mountns: bool = False,
                       inside: int | None = None, share_net: bool = False) -> Holder:
    """Create the user, network, UTS and IPC (and, for overlay storage, mount) namespaces in a
    new holder.

    With *inside* (the PID of a named network's holder), no user namespace is made: the new namespaces
    are created inside that holder's user namespace, so that the network's namespace may move
    a veth end into this one (Podman's rootless containers share one user namespace too).
    With *share_net* as well, the holder joins *inside*'s network namespace instead of making
    one (``--network container:NAME``).

    Returns once the namespaces exist and the id maps are written.

    **Cancellation:** the holder is killed before the cancellation propagates.
    """
    if inside is not None:
        return await _start_inside(inside, mountns=mountns, share_net=share_net)
    uid_map, gid_map = id_maps(os.getuid(), os.getgid()) if userns else ([], [])
    as_root = os.geteuid() == 0
    use_newuidmap = userns and not as_root and len(uid_map) > 1 and len(gid_map) > 1
    argv = ["unshare", "--uts", "--ipc"]
    if netns:
        argv.append("--net")
    if mountns:
        argv.append("--mount")  # private propagation: nothing mounted in it reaches the host
    if userns:
        argv.append("--user")
        if not use_newuidmap and not as_root:
            argv.append("--map-root-user")
            uid_map, gid_map = uid_map[:1], gid_map[:1]
    holder = await _spawn(argv, userns=userns, netns=netns, mountns=mountns, uid_map=uid_map,
                          gid_map=gid_map)
    child = holder.child
    try:
        if userns and as_root:  # root may write any map itself
            for kind, ranges in (("uid_map", uid_map), ("gid_map", gid_map)):
                with open(f"/proc/{child.pid}/{kind}", "w") as f:  # noqa: ASYNC230 - procfs
                    f.write("".join(f"{r.container} {r.host} {r.size}\n" for r in ranges))
        if use_newuidmap:  # the two maps are independent: written at once
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_map_ids, "newuidmap", child.pid, uid_map)
                    tg.start_soon(_map_ids, "newgidmap", child.pid, gid_map)
            except* RuntimeFailure as group:  # one failure reads as one line, as before
                raise group.exceptions[0] from None
    except BaseException:
        await holder.stop()
        raise
    return holder


async def _map_ids(tool: str, pid: int, ranges: list[IdRange]) -> None:
    """Write *pid*'s uid or gid map with the setuid *tool* (newuidmap, newgidmap)."""
    args = [str(n) for r in ranges for n in (r.container, r.host, r.size)]
    try:
        await _process.run([tool, str(pid), *args])
    except (RuntimeError, FileNotFoundError) as e:
        raise RuntimeFailure(f"cannot map ids with {tool}: {e}") from None


async def _spawn(argv: list[str], *, userns: bool, netns: bool, mountns: bool,
                 uid_map: list[IdRange], gid_map: list[IdRange]) -> Holder:
    """Start the holder command *argv* and wait until it says its namespaces exist."""
    argv = [*argv, "--", "/bin/sh", "-c", "echo ready && exec cat"]
    child = _process.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    holder = Holder(child, userns=userns, netns=netns, mountns=mountns, uid_map=uid_map,
                    gid_map=gid_map)
    try:
        assert child.popen.stdout is not None
        assert child.popen.stderr is not None
        await anyio.wait_readable(child.popen.stdout.fileno())
        if child.popen.stdout.readline() != b"ready\n":
            err = child.popen.stderr.read().decode(errors="replace").strip()
            raise RuntimeFailure(f"cannot create namespaces: {err or 'holder failed'}")
        child.popen.stdout.close()
        child.popen.stderr.close()
    except BaseException:
        await holder.stop()
        raise
    return holder


async def _start_inside(outer: int, *, mountns: bool, share_net: bool) -> Holder:
    """A holder whose network (or, with *share_net*, *outer*'s), UTS and IPC (and mount)
    namespaces live in the user namespace of holder *outer* (made by this user with
    :func:`holder_maps`), where we are root: no id maps to write."""
    enter = enter_argv(outer, userns=True, mount=False)
    argv = [*enter, "-n", "unshare", "--uts", "--ipc"] if share_net else \
        [*enter, "unshare", "--uts", "--ipc", "--net"]
    if mountns:
        argv.append("--mount")
    uid_map, gid_map, _ = holder_maps()
    return await _spawn(argv, userns=True, netns=True, mountns=mountns,
                        uid_map=uid_map, gid_map=gid_map)
