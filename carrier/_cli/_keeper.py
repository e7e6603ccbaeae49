"""The keeper: one resident process of this user that supervises every detached container, each
in a task group of its own, in one event loop.

Why: a Python process per detached container costs ~10 MiB of private pages whatever is shared
(docs/performance.md), because CPython writes into every page of the start path it runs; groups
in one loop cost ~50 KiB each, as the library's do. ``run -d`` (and ``start``) hand their
container to the keeper; the group is the very ``supervise`` a foreground run uses.

Fates: one group's failure ends that group only (caught, written to that container's
``supervisor.log``). A keeper that dies (killed, out of memory) releases every container's
supervisor lock with it, and the next command reconciles them as it does for any dead
supervisor: each is killed, reaped and cleaned, and nothing leaks (they do not survive it).

Started on demand by the command that needs it, never by hand; it listens on a socket in this
user's 0700 runtime directory (peer credentials and user namespace checked, as the fork server
does) and ends after ``CARRIER_KEEPER_IDLE`` seconds (60) with no container. SIGTERM stops
every container it keeps, gracefully, and then it ends. There is one keeper per install,
namespaces and caller configuration (the environment that reaches a supervisor, umask, limits,
logging), so that a container is supervised exactly as a supervisor of its own would have done
it. ``CARRIER_KEEPER=0`` gives each detached container a supervisor process of its own again.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hashlib
import json
import math
import os
import signal
import socket
import struct
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .._util._errors import CarrierError
from .._util._fs import unheld, unlink_own
from ._running import Running, stop_on_sigterm

TITLE = "carrier._cli._keeper"
"""The start of a keeper's process title (``ps``; the test suite's leak check knows it)."""
_MAX = 1 << 20
_FDS = 8  # the container's log, the work's descriptors (lock), its status pipe
_KEPT_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "XDG_RUNTIME_DIR", "XDG_DATA_HOME",
             "XDG_CONFIG_HOME", "REGISTRY_AUTH_FILE", "LD_LIBRARY_PATH", "LD_PRELOAD")
_OWN_USERNS = os.readlink("/proc/self/ns/user")

Work = Callable[..., Awaitable[None]]
"""``work(running, *args, *fds)``: a container's group; *running* is the keeper's set of the
containers it runs (SIGTERM stops each)."""


def submit(log: Path, work: Work, args: tuple[object, ...], fds: tuple[int, ...]) -> str | None:
    """Have this user's keeper run ``work(running, *args, *fds, status_fd)``, its log events
    appended to *log*; start a keeper if none runs. Return what the work wrote on its status
    descriptor ("started", or why not) once it closed it; None when no keeper took the work
    (disabled, or none could be started): the caller runs it as a process of its own."""
    if os.environ.get("CARRIER_KEEPER", "1") == "0" or len(fds) > _FDS - 2:
        return None
    path = socket_file()
    if path is None:
        return None
    import pickle

    request = json.dumps({"work": pickle.dumps((work, args)).decode("latin-1")}).encode()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        taken = _send(path, request, [out, *fds, write_end])
        for _ in range(2):  # none there, or one on its way out: start one, then ask it
            if taken:
                break
            _start(path)
            taken = _send(path, request, [out, *fds, write_end])
    finally:
        os.close(out)
        os.close(write_end)
    with os.fdopen(read_end, "rb") as status:
        return status.read().decode(errors="replace").strip() if taken else None


def socket_file() -> str | None:
    """This caller's keeper socket: beside the fork server's (same directory, install and
    namespaces), named by what a supervisor takes from its caller as well."""
    from . import _fastpath

    server = _fastpath.socket_file()
    if server is None:
        return None
    state = _fastpath.caller_state()
    env = {k: v for k, v in dict(state["env"]).items()  # type: ignore[call-overload]
           if k in _KEPT_ENV or k.startswith(("CARRIER_", "PYTHON"))}
    from .._util._logging import configured

    key = json.dumps([os.path.basename(server), env, state["umask"], state["limits"],
                      configured()], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(os.path.dirname(server), f"keeper-{digest}.sock")


def _send(path: str, request: bytes, fds: list[int]) -> bool:
    """Hand the work to the keeper at *path*; whether it took it (it says so once it has
    started the group's task)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC) as conn:
            conn.settimeout(60)  # a guard: a live keeper answers at once
            conn.connect(path)
            conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            return conn.recv(16) == b"ok"
    except TimeoutError:
        raise CarrierError(f"the keeper at {path} did not answer") from None
    except OSError:
        return False  # none there, or it went away before it took the work: nothing ran


def _start(path: str) -> None:
    """Start a keeper at *path* (a fresh fork of the fork server when there is one, else a new
    interpreter) and wait until it listens, or has given up; one command at a time starts one."""
    starting = os.open(f"{path}.start", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(starting, fcntl.LOCK_EX)  # held for a start's length only
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.connect(path)
            return  # another command started it meanwhile
        from . import _spawn

        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        log = Path(path).with_suffix(".log")
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            if not _spawn.spawn(serve, (path,), (null, out, out), [ready_w]):
                _exec(path, ready_w, (null, out))
        finally:
            for fd in (out, null, ready_w):
                os.close(fd)
        with os.fdopen(ready_r, "rb") as ready:
            ready.read()  # "ready" once it listens; nothing if it gave up (the next try tells)
    finally:
        os.close(starting)


def _exec(path: str, ready: int, std: tuple[int, int]) -> None:
    """With no fork server: a new interpreter in its own session (a fork of this command would
    keep its descriptors, its container's lock among them), started where this ``carrier``
    package lies so that ``-m`` imports this very package."""
    import subprocess

    from .._util._logging import configured
    from .._util._process import python_module

    subprocess.Popen(python_module("carrier._cli._keeper", path, str(ready), *(configured() or ())),
                     pass_fds=(ready,), stdin=std[0], stdout=std[1], stderr=std[1],
                     start_new_session=True)


def serve(path: str, ready: int) -> None:
    """The keeper's whole life: take the lock of *path* (or leave at once: one runs), listen,
    say "ready" on *ready*, supervise what comes until idle."""
    from setproctitle import setproctitle

    setproctitle(f"{TITLE} {path}")
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    os.chdir("/")
    for key in [k for k in os.environ if not (k in _KEPT_ENV or k.startswith(("CARRIER_", "PYTHON")))]:
        del os.environ[key]  # what named it, and only that, reaches the containers it starts
    _sweep(path)
    from .._runtime._reaper import become_subreaper
    from .._util._process import raise_fd_limit

    become_subreaper()  # each container's init is reparented here once its runtime has gone
    raise_fd_limit()  # ~10 descriptors per container (each supervise raises it too)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
                             | socket.SOCK_NONBLOCK)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener.bind(path)
    listener.listen(128)
    bound = os.stat(path).st_ino  # the file is ours while it has this inode
    os.write(ready, b"ready")
    os.close(ready)
    import anyio

    try:
        anyio.run(_Keeper(listener, bound, float(os.environ.get("CARRIER_KEEPER_IDLE", "60"))).run)
    finally:
        unlink_own(path, bound)


def _sweep(path: str) -> None:
    """Remove what keepers no longer running left beside *path* (socket, locks; a log once a
    day old)."""
    bases = {str(f).rsplit(".sock.", 1)[0] for pattern in ("keeper-*.sock.lock", "keeper-*.sock.start")
             for f in Path(path).parent.glob(pattern)}
    for lock in unheld((f"{base}.sock.lock" for base in bases - {path.removesuffix(".sock")}),
                       create=True):
        base = lock.removesuffix(".sock.lock")
        for suffix in (".sock", ".sock.start", ".sock.lock"):
            with contextlib.suppress(OSError):
                os.unlink(base + suffix)
        with contextlib.suppress(OSError):  # its trace, kept a day after it ended
            if time.time() - os.stat(f"{base}.log").st_mtime > 86400:
                os.unlink(f"{base}.log")


def _descriptors_short() -> bool:
    """Whether another container's ~10 descriptors might not fit under this process's limit
    (then its caller gives it a supervisor of its own)."""
    import resource

    return len(os.listdir("/proc/self/fd")) + 64 > resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _Keeper:
    """The event loop's side: accept work, run each group in a task of its own, end when idle."""

    def __init__(self, listener: socket.socket, inode: int, idle: float) -> None:
        import anyio

        self._listener = listener
        self._inode = inode
        self._idle = idle
        self._busy = 0  # groups running, and connections not yet answered
        self._changed = anyio.Event()
        self.running = Running()

    async def run(self) -> None:
        import anyio

        from .._runtime._reaper import reap_on_sigchld
        from .._util._signals import FORWARDED

        with anyio.open_signal_receiver(*FORWARDED) as signals:
            signal.pthread_sigmask(signal.SIG_SETMASK, [])  # a command held them until now
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._signals, signals)
                tg.start_soon(reap_on_sigchld)
                tg.start_soon(self._accept, tg)
                await self._until_idle()
                unlink_own(self._listener.getsockname(), self._inode)  # no new caller comes
                tg.cancel_scope.cancel()

    async def _until_idle(self) -> None:
        import anyio

        while True:
            changed = self._changed = anyio.Event()
            if self.running.stopping and not self._busy:
                return
            with anyio.move_on_after(math.inf if self._busy else self._idle):
                await changed.wait()
            if not changed.is_set():
                return  # nothing ran, nothing came, for the whole while

    def _changes(self, busy: int) -> None:
        self._busy += busy
        self._changed.set()

    async def _signals(self, signals: Any) -> None:
        """SIGTERM stops every container (each group then ends as ``stop`` ends it) and then
        the keeper; every other signal is handled and means nothing, so none ends it without
        its groups' cleanup."""
        await stop_on_sigterm(signals, self.running, then=lambda: self._changes(0))

    async def _accept(self, tg: Any) -> None:
        import anyio

        while True:
            await anyio.wait_readable(self._listener)
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:  # out of descriptors: this caller fails (it runs its own), not all
                await anyio.sleep(0.1)
                continue
            self._changes(+1)
            tg.start_soon(self._take, conn)

    async def _take(self, conn: socket.socket) -> None:
        """Read one request; run its group if it is this user's (answered "ok" first)."""
        import anyio

        fds = array.array("i")
        try:
            with conn:
                pid, uid, _gid = struct.unpack(
                    "3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                          struct.calcsize("3i")))
                # This user, in this user namespace (a rootless container's root is this uid too).
                if uid != os.getuid() or os.readlink(f"/proc/{pid}/ns/user") != _OWN_USERNS:
                    raise PermissionError("not this user's")
                if self.running.stopping or _descriptors_short():
                    raise ConnectionRefusedError("stopping")  # its caller runs it on its own
                with anyio.fail_after(10):
                    await anyio.wait_readable(conn)
                msg, ancdata, _flags, _addr = conn.recvmsg(
                    _MAX, socket.CMSG_SPACE(_FDS * fds.itemsize), socket.MSG_CMSG_CLOEXEC)
                for level, kind, data in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                if len(fds) < 2:
                    raise ValueError("no log or status descriptor")
                import pickle

                work, args = pickle.loads(str(json.loads(msg)["work"]).encode("latin-1"))
                conn.send(b"ok")
        except Exception:
            for fd in fds:
                os.close(fd)
            self._changes(-1)
            return
        try:
            with contextlib.suppress(Exception):  # never the others' end (no log to say it in)
                await self._group(work, args, list(fds))
        finally:
            self._changes(-1)

    async def _group(self, work: Work, args: tuple[object, ...], fds: list[int]) -> None:
        """One container's group, its events into its own log; whatever it raises ends it
        alone (written to that log: its only trace)."""
        from .._util._logging import sink

        with os.fdopen(fds[0], "a", buffering=1) as log, sink(log):
            try:
                await work(self.running, *args, *fds[1:])
            except Exception:
                with contextlib.suppress(Exception):  # a full disk must not end the others
                    traceback.print_exc(file=log)


if __name__ == "__main__":  # serve from the module the work is pickled against, not this copy
    import sys

    from carrier._cli import _keeper
    from carrier._util._logging import configure

    if len(sys.argv) == 5:  # as the command that started it was told (--log-level, --log-format)
        configure(sys.argv[3], sys.argv[4])
    _keeper.serve(sys.argv[1], int(sys.argv[2]))
