"""Talking to a container's supervisor from another carrier process, and cleaning up after one
that died.

Each container's supervisor answers on its own control socket (``carrier stop``, ``rm -f``): a
socket file in the container's private directory, so that it is reached from any network
namespace (an abstract socket belongs to one). A supervisor that is gone without cleaning up
(SIGKILL) is noticed through its released lock, and :func:`reconcile` finishes its cleanup,
also for records it cannot fully read (damaged) and for creations that died half-way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import signal
import socket
import struct
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .._network._setup import reap_stale_helper
from .._runtime._oci import Runtime, resolve
from .._state._records import Containers, Record, Status, now
from .._state._schema import Damaged
from .._util import _process
from .._util._atomic import try_lock, write_json
from .._util._errors import CarrierError, ConflictError, NotFoundError
from .._util._logging import log
from .._util._root import Root
from ._netgroup import reconcile_networks

SOCKET = "control.sock"
"""The control socket's name in the container's directory."""
STOP_REQUEST = "stop.request"
"""A stop request left for a supervisor that is not listening yet."""


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


@contextlib.contextmanager
def _short(directory: Path) -> Iterator[str]:
    """A short path to the control socket in *directory*: through an ``O_PATH`` descriptor of
    the directory, since a socket path must fit in 108 bytes and a Carrier root need not."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET}"
    finally:
        os.close(fd)


def _connect(directory: Path, message: bytes) -> bool:
    """Send *message* to the supervisor listening in *directory*; False if none listens."""
    s = connect(directory, message)
    if s is None:
        return False
    s.close()
    return True


def connect(directory: Path, message: bytes) -> socket.socket | None:
    """A connection to the supervisor listening in *directory* that has sent *message* and
    read the answer (``ok``); None if none listens."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(10)
        try:
            with _short(directory) as path:
                s.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            s.close()
            return None
        s.sendall(message)
        answer = b""
        while not answer.endswith(b"\n") and len(answer) < 16:  # exactly the answer line
            chunk = s.recv(1)
            if not chunk:
                break
            answer += chunk
    except BaseException:
        s.close()
        raise
    return s


def _ask(directory: Path, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """Send *request* to the supervisor listening in *directory* and read its one-line JSON
    answer (None if no supervisor listens); a refusal in it (``error``) is raised as one line."""
    sock = connect(directory, json.dumps(request).encode() + b"\n")
    if sock is None:
        return None
    with sock:
        sock.settimeout(timeout)  # a guard, not a wait: the answer comes once the work is done
        line = b""
        while not line.endswith(b"\n") and len(line) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            line += chunk
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise CarrierError("the container's supervisor did not answer (it ended meanwhile?)")
    if reply.get("error"):
        raise CarrierError(str(reply["error"]))
    return reply


def answer(sock: socket.socket, reply: dict[str, Any]) -> None:
    """The server's side of :func:`_ask`: *reply* as one JSON line to a handed-on request's
    caller (a caller gone, or silent for 5 s, just misses it)."""
    with contextlib.suppress(OSError):
        sock.setblocking(True)
        sock.settimeout(5)
        sock.sendall(json.dumps(reply).encode() + b"\n")


def exec_detached(directory: Path, argv: list[str], env: list[str], workdir: str | None,
                  user: str | None) -> int | None:
    """``exec -d`` through the supervisor listening in *directory*: it runs the runtime's
    detached exec itself, so that it adopts and reaps the command; the start's exit status
    (0, or 126/127), or None if no supervisor listens. A refusal (a bad user) is raised."""
    request = {"exec": {"argv": argv, "env": env, "workdir": workdir, "user": user}}
    reply = _ask(directory, request, 60)
    if reply is None:
        return None
    try:
        return int(reply["exit_code"])
    except (ValueError, KeyError, TypeError):
        raise CarrierError("the container's supervisor did not answer the exec -d request "
                           "(it ended meanwhile?)") from None


def network_request(directory: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """``network connect``/``disconnect`` (*request*: ``{"connect": {...}}`` or
    ``{"disconnect": {...}}``) through the supervisor listening in *directory*, which joins or
    leaves and holds the membership; its answer, or None if no supervisor listens. A refusal
    is raised as one line."""
    return _ask(directory, request, 120)  # a connect may start the network's group (30 s at most)


def request_stop(root: Root, cid: str, name: str, timeout: float | None,
                 default_timeout: float = 10.0) -> None:
    """Ask the supervisor of container *cid* to stop it, and wait until it is cleaned up.

    The request goes to the container's own control socket, so a supervisor running many
    containers (``carrier up``, a library user) stops just this one. A supervisor that holds
    the lock but does not listen yet (it is still starting) finds the request in
    :data:`STOP_REQUEST` once it listens; a refused connection never counts as "nothing runs".
    The wait is for the container's supervisor lock, which the supervisor releases once its
    cleanup is done; it is bounded by the stop timeout plus a minute.
    """
    containers = Containers(root)
    directory = containers.dir(cid)
    message = json.dumps({"stop": timeout}).encode() + b"\n"
    try:
        if not _connect(directory, message):
            write_json(directory / STOP_REQUEST, {"stop": timeout})
            _connect(directory, message)  # it may have started listening meanwhile
    except OSError as e:
        if e.errno == errno.ENOENT:  # the directory is gone: the container was removed
            return
        raise CarrierError(f"container {name}: cannot reach its supervisor: "
                           f"{e.strerror or e}") from None
    bound = (timeout if timeout is not None else default_timeout) + 60
    try:
        fd = os.open(containers.supervisor_lock(cid), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(max(1, math.ceil(bound)))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the supervisor when the cleanup is done
    except TimeoutError:
        raise CarrierError(f"container {name}: its supervisor did not stop in time") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.close(fd)


async def serve_control(cid: str, on_stop: Callable[[float | None], None],
                        directory: Path,
                        on_attach: Callable[[socket.socket, dict[str, Any]], Coroutine[Any, Any, None]]
                        | None = None,
                        on_exec: Callable[[socket.socket, dict[str, Any]], Coroutine[Any, Any, None]]
                        | None = None,
                        on_network: Callable[[socket.socket, dict[str, Any]],
                                             Coroutine[Any, Any, None]] | None = None) -> None:
    """Answer stop requests for container *cid* until cancelled (a supervisor's member), and
    hand each attach request's connection to *on_attach*, which serves it in a task of its own
    (``carrier attach``) and closes it; an ``exec -d`` request's likewise to *on_exec*, and a
    ``network connect``/``disconnect`` request's to *on_network*.

    Only processes of this user are heard (``SO_PEERCRED``), besides the directory's own 0700.
    A request left in :data:`STOP_REQUEST` before the socket existed is taken first.
    """
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with _short(directory) as path:
            with contextlib.suppress(FileNotFoundError):  # a killed supervisor's
                os.unlink(path)
            listener.bind(path)
        listener.listen(8)
        listener.setblocking(False)
        with contextlib.suppress(OSError, ValueError):
            left = json.loads((directory / STOP_REQUEST).read_bytes())
            (directory / STOP_REQUEST).unlink()
            on_stop(left.get("stop"))
        async with anyio.create_task_group() as sessions:
            while True:
                await anyio.wait_readable(listener)
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                except OSError:  # out of descriptors: this caller fails, not the container
                    continue
                sessions.start_soon(_serve_one, conn, on_stop, on_attach, on_exec, on_network,
                                    sessions)
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            (directory / SOCKET).unlink()


_Handler = Callable[[socket.socket, dict[str, Any]], Coroutine[Any, Any, None]]
REQUEST_LIMIT = 1 << 20  # an exec -d request carries argv and env: bounded, not 4 KiB
REQUEST_TIMEOUT = 5.0  # a caller that connects and says nothing is dropped, never waited on


async def _serve_one(conn: socket.socket, on_stop: Callable[[float | None], None],
                     on_attach: _Handler | None, on_exec: _Handler | None,
                     on_network: _Handler | None, sessions: TaskGroup) -> None:
    """One caller of the control socket, in a task of its own, so that a silent or malformed
    one never holds up the others or the container: read its request line, answer ``ok``, and
    hand an attach or exec -d connection on. Anything malformed just closes the connection."""
    handed = False
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            return
        conn.setblocking(False)
        request = await _read_request(conn)
        if request is None:
            return
        conn.sendall(b"ok\n")
        if "stop" in request:
            timeout = request["stop"]
            on_stop(float(timeout) if isinstance(timeout, (int, float)) else None)
        attach, detached = request.get("attach"), request.get("exec")
        if isinstance(attach, dict) and on_attach is not None:
            handed = True
            sessions.start_soon(on_attach, conn, attach)
        elif isinstance(detached, dict) and on_exec is not None:
            handed = True
            sessions.start_soon(on_exec, conn, detached)
        elif on_network is not None and any(isinstance(request.get(k), dict)
                                            for k in ("connect", "disconnect")):
            handed = True
            sessions.start_soon(on_network, conn, request)
    except OSError:
        pass
    finally:
        if not handed:
            conn.close()


async def _read_request(conn: socket.socket) -> dict[str, Any] | None:
    """The caller's request: one JSON object on one line (bounded in size and time); None if
    it is anything else. Only the line is taken: what follows belongs to an attach session."""
    data = b""
    with anyio.move_on_after(REQUEST_TIMEOUT):
        while not data.endswith(b"\n") and len(data) < REQUEST_LIMIT:
            await anyio.wait_readable(conn)
            try:
                peek = conn.recv(65536, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            if not peek:
                break
            end = peek.find(b"\n")
            data += conn.recv(len(peek) if end < 0 else end + 1)
    try:
        request = json.loads(data or b"{}")
    except ValueError:
        return None
    return request if isinstance(request, dict) else None


async def reconcile(root: Root) -> None:
    """Finish the cleanup of every container whose supervisor died without doing it, reap the
    processes of damaged records, and repair creations that died half-way."""
    containers = Containers(root)
    containers.repair()
    records, damaged = containers.scan()
    for record in records:
        if record.status is Status.EXITED:
            continue
        await _reconcile_one(root, record.id)
    for cid in damaged:
        await _reconcile_one(root, cid)
    reconcile_networks(root)


async def _reconcile_one(root: Root, cid: str) -> None:
    containers = Containers(root)
    try:
        lock = try_lock(containers.supervisor_lock(cid), create=False)
    except (FileNotFoundError, NotADirectoryError):  # removed meanwhile
        return
    if lock is None:  # a live supervisor holds it
        return
    try:
        await _clean_stale(root, cid)
    finally:
        os.close(lock)


async def _clean_stale(root: Root, cid: str) -> None:
    """Reap what the dead supervisor of *cid* left (the caller holds its lock) and record it;
    a damaged record is reaped from what can be salvaged and left as it is."""
    containers = Containers(root)
    try:
        record = containers.load(cid)
    except NotFoundError:
        record, salvaged = None, {}
    except Damaged as d:
        record, salvaged = None, d.salvage
    if record is not None:
        if record.status is Status.EXITED:  # cleaned by someone else meanwhile
            return
        if record.status is Status.CREATED and record.supervisor_pid is None:
            return  # created and never started (carrier create): nothing ran, nothing to reap
        salvaged = {"holder_pid": record.holder_pid, "holder_start": record.holder_start,
                    "spec": {"runtime": record.spec.runtime}}
    await _reap(root, cid, salvaged)
    if record is None:
        return  # nothing is overwritten: rm -f removes it
    record.transition(Status.EXITED)
    record.exit_code = 137
    record.reason = "supervisor-died: its supervisor was killed; leftovers were reaped"
    record.finished = now()
    record.holder_pid = None
    if record.network is not None:  # a connection lasts for one run (``network connect``)
        record.network.pop("connected", None)
    try:
        if record.spec.remove:
            containers.remove(record)
        else:
            containers.save(record)
    except OSError as e:  # a full disk: the processes are gone all the same
        if record.started is None:  # it never ran (its start failed): nothing worth keeping
            containers.remove(record)
            log.warning("container.removed", container=record.name, reason="its start failed "
                        f"and its end cannot be recorded: {e.strerror or e}")
        else:  # a later command records it
            log.warning("container.not-recorded", container=record.name, error=e.strerror or str(e))
        return
    log.warning("container.reaped", container=record.name)


async def _reap(root: Root, cid: str, salvaged: dict[str, Any]) -> None:
    """End every process a dead supervisor of *cid* left, from the PIDs and start times it
    recorded: the holder, the runtime's container, the network helper, fuse-overlayfs."""
    cdir = Containers(root).dir(cid)
    pid, start = salvaged.get("holder_pid"), salvaged.get("holder_start")
    fd = pidfd_of(pid, start) if start is not None else None
    if fd is not None:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        os.close(fd)
    if (root.runtime / cid).exists():
        runtime = (salvaged.get("spec") or {}).get("runtime", "runc")
        with contextlib.suppress(CarrierError):
            await Runtime(resolve(runtime), root.runtime).delete(cid)
    reap_stale_helper(cdir)
    _process.kill_recorded(cdir / "storage.pid")  # fuse-overlayfs
    for scratch in (*cdir.glob("exec-*"), cdir / SOCKET):  # health checks; the socket
        with contextlib.suppress(OSError):
            scratch.unlink()


async def claim(root: Root, cid: str) -> tuple[Record, int] | None:
    """Take container *cid* to start it again (``start``, ``restart``): its supervisor lock and
    its record, ready to run (``created``); None if a supervisor holds it (it runs).

    What a dead supervisor left is reaped first, so a new run never meets an old one's holder.
    """
    containers = Containers(root)
    try:
        lock = try_lock(containers.supervisor_lock(cid), create=False)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"no such container: {cid}") from None
    if lock is None:
        return None
    try:
        await _clean_stale(root, cid)
        record = containers.load(cid)
        if record.status is Status.EXITED:
            record.transition(Status.CREATED)  # a new run reuses the record
            containers.save(record)
    except BaseException:
        os.close(lock)
        raise
    return record, lock


async def remove(root: Root, cid: str) -> None:
    """Remove container *cid* for good: never while a supervisor holds it, and only once the
    processes a dead supervisor left are reaped (also for a damaged record)."""
    containers = Containers(root)
    try:
        lock = try_lock(containers.supervisor_lock(cid), create=False)
    except (FileNotFoundError, NotADirectoryError):
        lock = None
        if not containers.dir(cid).exists():
            return  # removed meanwhile
    else:
        if lock is None:
            raise ConflictError(f"cannot remove container {cid[:12]}: it is still running")
    try:
        await _clean_stale(root, cid)
        if containers.dir(cid).exists():
            containers.remove_id(cid)
    finally:
        if lock is not None:
            os.close(lock)
