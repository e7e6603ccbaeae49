"""The supervisor as its container's subreaper, so that ``runc run --detach`` need not stay.

A process that calls :func:`become_subreaper` (the CLI's supervisors do; the library does not,
as it must not change its host application's process-wide state) adopts every orphan among its
descendants. ``runc run --detach`` exits once the command runs, and the container's init is
then the supervisor's child: :class:`Init` waits on it through a pidfd and reaps exactly it. As
the init's reaper we keep its PID from being reused until we reap it, so the PID from
``--pid-file`` is safe to open. The runtime's own short-lived helpers (runc's ``runc:[N:...]``
stages), what fuse-overlayfs forks and named networks' supervisors, once orphaned here and
ended, are reaped by :func:`reap_orphans`; nothing else is, so no other waiter
(``subprocess``, asyncio's or trio's child watchers) ever loses a status.
Processes the container's own processes start are reparented to the container's init, never
to us; an ``exec -d`` command (``runc exec --detach``, asked of the supervisor) is adopted by
us and waited on by its requester the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio

from .._util import _process
from .._util._logging import log

_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
_NETWORK_SUPERVISOR = b"carrier-netgrp"  # its comm (name_network_supervisor)
# Whose orphans we take: runc's nsexec stages (runc 1.0+), what fuse-overlayfs forks (left
# when it is killed) and network supervisors; a child with a waiter of its own
# (_process.Child) never.
_ORPHAN_NAMES = (b"runc:[", b"fuse-overlayfs", _NETWORK_SUPERVISOR)

_state = {"subreaper": False, "starting": 0}
_adopted: set[int] = set()  # inits waited on by their own Init


def become_subreaper() -> None:
    """Make this process the reaper of its orphaned descendants (``PR_SET_CHILD_SUBREAPER``):
    from now on a container started here runs without a resident ``runc run``. Not inherited
    by fork, so each supervising process calls it itself."""
    if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")
    _state["subreaper"] = True


def name_network_supervisor() -> None:
    """Give this process the name (``comm``, ``PR_SET_NAME``; its command line stays) that
    :func:`reap_orphans` takes: a named network's supervisor, started detached (``setsid -f``)
    by a container's group, is orphaned to that group's subreaper, which must reap it."""
    _libc.prctl(15, _NETWORK_SUPERVISOR, 0, 0, 0)


def is_subreaper() -> bool:
    """Whether :func:`become_subreaper` was called in this process."""
    return bool(_state["subreaper"])


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """While a runtime starts a container: its init may already be ours and gone, and is not
    yet adopted, so :func:`reap_orphans` leaves every zombie alone until this ends."""
    _state["starting"] += 1
    try:
        yield
    finally:
        _state["starting"] -= 1


class Init(_process.Reapable):
    """The container's init once the runtime has exited: our child by adoption.

    It offers what the supervisor used of the ``runc run`` process (:class:`_process.Child`):
    ``pid``, ``returncode``, :meth:`wait`, :meth:`signal`, :meth:`kill`.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd = os.pidfd_open(pid)  # a zombie still has its PID: we have not reaped it
        self.returncode: int | None = None
        _adopted.add(pid)

    async def wait(self) -> int:
        """Wait for the init to end and reap exactly it; a ``Popen``-style returncode (the
        code, or -N after signal N), so the outcome reads as ``runc run``'s did.

        **Cancellation:** safe; it can be waited on again.
        """
        if self.returncode is None:
            await anyio.wait_readable(self.pidfd)
            # It has ended (the pidfd is readable): this reaps at once, it never blocks.
            info = os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED)  # noqa: ASYNC222
            assert info is not None
            exited = info.si_code == os.CLD_EXITED
            self.returncode = info.si_status if exited else -info.si_status
            os.close(self.pidfd)
            _adopted.discard(self.pid)
        return self.returncode

    def close(self) -> None:
        """Let go of an init that was never reaped (its supervisor ends first): its pidfd is
        closed; a reaped one's was closed already."""
        if self.returncode is None and self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
            _adopted.discard(self.pid)



def reap_orphans() -> int:
    """Reap the runtime's and fuse-overlayfs's helpers and the network supervisors that were
    orphaned to us and have ended; how many.

    Only zombies with those names and no :class:`_process.Child` waiting on them are taken,
    and none while a start is in flight (its init, not yet adopted, may be one).
    """
    if not _state["subreaper"] or _state["starting"]:
        return 0
    try:  # the usual case, in microseconds: no child has ended at all
        if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return 0
    except ChildProcessError:  # no children
        return 0
    me = os.getpid()
    reaped = 0
    for pid in _children():
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm, rest = stat[stat.find(b"(") + 1:stat.rfind(b")")], stat[stat.rfind(b")") + 2:].split()
        if rest[0] != b"Z" or int(rest[1]) != me or int(pid) in _adopted:
            continue
        if not comm.startswith(_ORPHAN_NAMES) or _process.has_waiter(int(pid)):
            continue
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(int(pid), os.WNOHANG)[0]:
                reaped += 1
    return reaped


def _children() -> list[str]:
    """This process's children (each thread's ``children`` file): the candidates, without a
    walk of every process on the host; that walk where the kernel does not list them."""
    try:
        return [pid for task in os.listdir("/proc/self/task")
                for pid in Path(f"/proc/self/task/{task}/children").read_text().split()]
    except OSError:
        return [pid for pid in os.listdir("/proc") if pid.isdigit()]


async def reap_on_sigchld() -> None:
    """Reap what :func:`reap_orphans` may take as soon as it ends, for a supervisor of many
    groups (the keeper, a tree's): a named network's supervisor ends after its last
    container, when no group of it is left to reap it, and would stay a zombie for as long as
    the supervisor lives. A failure to look (out of descriptors) waits for the next SIGCHLD:
    it must never end the supervisor and every group in it."""
    with anyio.open_signal_receiver(signal.SIGCHLD) as ended:
        async for _ in ended:
            try:
                reap_orphans()
            except OSError as e:
                log.debug("reaper.failed", error=repr(e))
