"""Talking to a container's supervisor from another carrier process, and cleaning up after one
that died.

Each container's supervisor answers on its own control socket (``carrier stop``, ``rm -f``).
A supervisor that is gone without cleaning up (SIGKILL) is noticed through its released lock,
and :func:`reconcile` finishes its cleanup.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import signal
import socket
import struct
from collections.abc import Callable

import anyio

from .._network._setup import reap_stale_helper
from .._runtime._oci import Runtime, resolve
from .._state._records import Containers, Record, Status, now
from .._util import _process
from .._util._atomic import try_lock
from .._util._errors import CarrierError
from .._util._logging import log
from .._util._root import Root


def pidfd_of(pid: int | None, expected_start: int | None) -> int | None:
    """A pidfd for *pid* if it is still the process that was recorded (checked by start time)."""
    if pid is None:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if expected_start is not None and not _process.same_process(pid, expected_start):
        os.close(fd)
        return None
    return fd


def _address(cid: str) -> str:
    """The supervisor's control socket: abstract (no file, no path-length limit), per container."""
    return f"\0carrier-control-{cid}"


def request_stop(root: Root, record: Record, timeout: float | None) -> None:
    """Ask the supervisor of *record* to stop that container, and wait until it is cleaned up.

    The request goes to the container's own control socket, so a supervisor running many
    containers (``carrier up``, a library user) stops just this one. The wait is for the
    container's supervisor lock, which the supervisor releases once its cleanup is done; it is
    bounded by the stop timeout plus a minute.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        try:
            s.connect(_address(record.id))
            s.sendall(json.dumps({"stop": timeout}).encode() + b"\n")
            s.recv(16)
        except (ConnectionRefusedError, FileNotFoundError):
            return  # no supervisor listens: nothing runs (reconcile handles a dead one)
        except OSError as e:
            raise CarrierError(f"container {record.name}: cannot reach its supervisor: {e}") from None
    bound = (timeout if timeout is not None else record.spec.stop_timeout) + 60
    fd = os.open(Containers(root).supervisor_lock(record.id), os.O_RDWR | os.O_CLOEXEC)

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(max(1, math.ceil(bound)))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the supervisor when the cleanup is done
    except TimeoutError:
        raise CarrierError(f"container {record.name}: its supervisor did not stop in time") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.close(fd)


async def serve_control(cid: str, on_stop: Callable[[float | None], None]) -> None:
    """Answer stop requests for container *cid* until cancelled (a supervisor's member).

    Only processes of this user are heard (``SO_PEERCRED``): an abstract socket has no file
    permissions of its own.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        listener.bind(_address(cid))
        listener.listen(8)
        listener.setblocking(False)
        while True:
            await anyio.wait_readable(listener)
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            with conn:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
                if struct.unpack("3i", creds)[1] != os.getuid():
                    continue
                conn.settimeout(5)
                try:
                    request = json.loads(conn.recv(4096) or b"{}")
                    conn.sendall(b"ok\n")
                except (OSError, ValueError):
                    continue
                if "stop" in request:
                    on_stop(request["stop"])
    finally:
        listener.close()


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
    _process.kill_recorded(containers.dir(record.id) / "storage.pid")  # fuse-overlayfs
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
