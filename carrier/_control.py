"""Talking to a container's supervisor from another carrier process, and cleaning up after one
that died.

A stop request is a ``stop.json`` file (the timeout) plus SIGTERM to the supervisor, whose PID is
checked against its recorded start time first. The requester then waits on the supervisor's
pidfd. A supervisor that is gone without cleaning up (SIGKILL) is noticed through its released
lock, and :func:`reconcile` finishes its cleanup.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal

from . import _process
from ._atomic import read_json, try_lock, write_json
from ._errors import CarrierError
from ._logging import log
from ._network import reap_stale_helper
from ._root import Root
from ._runtime import Runtime, resolve
from ._state import Containers, Record, Status, now


def pidfd_of(pid: int | None, expected_start: int | None) -> int | None:
    """A pidfd for *pid* if it is still the process that was recorded (checked by start time)."""
    if pid is None:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if expected_start is not None and _process.start_time(pid) != expected_start:
        os.close(fd)
        return None
    return fd


def request_stop(root: Root, record: Record, timeout: float | None) -> None:
    """Ask the supervisor of *record* to stop it, and wait until the supervisor has exited.

    The wait is bounded: the stop timeout plus a minute for the cleanup.
    """
    containers = Containers(root)
    fd = pidfd_of(record.supervisor_pid, record.supervisor_start)
    if fd is None:
        return
    try:
        if timeout is not None:
            write_json(containers.dir(record.id) / "stop.json", {"timeout": timeout})
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        bound = (timeout if timeout is not None else record.spec.stop_timeout) + 60
        if not select.select([fd], [], [], bound)[0]:
            raise CarrierError(f"container {record.name}: its supervisor did not stop in time")
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def requested_timeout(root: Root, cid: str) -> float | None:
    """The stop timeout that ``carrier stop -t`` left for this supervisor, if any."""
    path = Containers(root).dir(cid) / "stop.json"
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
        return float(read_json(path)["timeout"])
    return None


async def reconcile(root: Root) -> None:
    """Finish the cleanup of every container whose supervisor died without doing it."""
    containers = Containers(root)
    for record in containers.all():
        if record.status is Status.EXITED:
            continue
        lock = try_lock(containers.supervisor_lock(record.id))
        if lock is None:  # a live supervisor holds it
            continue
        try:
            await _clean_stale(root, containers, containers.load(record.id))
        finally:
            os.close(lock)


async def _clean_stale(root: Root, containers: Containers, record: Record) -> None:
    if record.status is Status.EXITED:  # cleaned by someone else meanwhile
        return
    fd = pidfd_of(record.holder_pid, record.holder_start)
    if fd is not None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        os.close(fd)
    with contextlib.suppress(CarrierError):
        await Runtime(resolve(record.spec.runtime), root.runtime).delete(record.id)
    reap_stale_helper(containers.dir(record.id))
    for scratch in containers.dir(record.id).glob("exec-*"):  # a dead supervisor's health checks
        scratch.unlink(missing_ok=True)
    record.transition(Status.EXITED)
    record.exit_code = 137
    record.reason = "supervisor-died: its supervisor was killed; leftovers were reaped"
    record.finished = now()
    record.holder_pid = None
    log.warning("container.reaped", container=record.name)
    if record.spec.remove:
        containers.remove(record)
    else:
        containers.save(record)
