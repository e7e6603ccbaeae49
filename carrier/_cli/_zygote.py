"""The fork server: a warm, single-threaded process that forks one process per command.

It imports everything a command needs once, then waits on its socket. The command that found
no server starts one and runs plainly; the server listens at once but imports only once that
command has ended or another command waits, so that its imports never compete with the first
command's start (two cores are not many). Each connection gets a
fresh fork that takes the caller's descriptors, working directory, environment, umask and
limits, and runs the very ``main()`` a plain ``carrier`` runs: one way to run a container, and
each command (each supervisor) still its own process, so one's crash never touches another.
A detached supervisor is a fresh fork of the server too (``spawn``, asked for by its command),
so it shares the server's pages copy-on-write and none of what its command wrote.

Its fates are kept apart from the commands': it is the parent of each forked command only to
report how the command ended (a code, or the signal that killed it); a command whose caller
dies is killed, as a plain ``carrier`` killed with its terminal would be. The server ends after
``CARRIER_FORK_SERVER_IDLE`` seconds (60 by default) with nothing running; a killed server
costs only the exit status of the commands in flight (their callers say so) and the next
command starts a new one. Only this user can connect: the socket's directory is 0700 and each
caller's credentials are checked.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from .._util._fs import unheld, unlink_own
from . import _spawn
from ._spawn import MAX as _MAX
from ._spawn import SPAWN_FDS as _SPAWN_FDS

_OWN_USERNS = os.readlink("/proc/self/ns/user")

PRELOAD = (
    "carrier._cli._app", "carrier._cli._run", "carrier._cli._containers", "carrier._cli._common",
    "carrier._supervision._group", "carrier._supervision._create", "carrier._supervision._control",
    "carrier._network._setup", "carrier._network._netlink", "carrier._state._schema",
    "carrier._network._pasta", "carrier._network._slirp4netns", "carrier._images._ensure",
    "anyio", "anyio._backends._asyncio", "anyio._core._signals", "structlog", "msgspec",
    "pyroute2", "setproctitle",
)


def serve(path: Path, starter: int | None = None) -> None:
    """Serve on *path* until idle; return at once if another server holds it. *starter* is the
    command that started this server (its parent): the imports wait for its end."""
    os.chdir("/")  # hold no directory of the caller that started it
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    _sweep(path)
    _spawn.serving = path
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(128)  # a command that comes now waits for the imports, not runs plainly
    bound = os.stat(path).st_ino  # the file is ours while it has this inode
    idle = float(os.environ.get("CARRIER_FORK_SERVER_IDLE", "60"))
    try:
        if not _after(starter, listener, idle):
            return  # its starter ran for the whole idle time, and nobody else came
        try:
            ready = _ready()
        except Exception:
            ready = False
        if not ready:  # the waiting callers see the end and run plainly; so do later ones,
            unlink_own(str(path), bound)  # at once, while this lock says a server "runs"
            listener.close()
            time.sleep(idle)  # not a wait for anything: how long the next ones are spared
            return
        children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, the caller's socket)
        while True:
            waiting = [listener.fileno(), *children]
            ready_fds = select.select(waiting, [], [], None if children else idle)[0]
            if not ready_fds:
                return
            for fd in ready_fds:
                if fd == listener.fileno():
                    _accept(listener, children, lock)
                else:
                    _reap(fd, children)
    finally:
        unlink_own(str(path), bound)


def _after(starter: int | None, listener: socket.socket, idle: float) -> bool:
    """Wait until *starter* (this server's parent, a command running plainly) has ended, or a
    command waits on *listener*; False if neither came within *idle* seconds (then the server
    ends, as an idle one does: it holds nothing of a long-lived starter's)."""
    if starter is None:
        return True
    try:
        pidfd = os.pidfd_open(starter)
    except OSError:
        return True  # gone already
    try:
        if os.getppid() != starter:  # the pidfd is not that command's but a reused pid's
            return True
        return bool(select.select([pidfd, listener.fileno()], [], [], idle)[0])
    finally:
        os.close(pidfd)


def _ready() -> bool:
    """Import and warm what the commands run; whether this process may fork (no threads)."""
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    _warm_parsers()
    _warm()
    # setproctitle finds the memory it rewrites from the environment as the process started;
    # a fork replaces the environment with its caller's first, so it must find it here, once.
    from setproctitle import getproctitle, setproctitle

    setproctitle(getproctitle())
    if threading.active_count() != 1:
        return False  # never fork a process with threads: a lock held by one would stay held
    gc.freeze()  # the imported objects stay out of the collector: their pages stay shared
    return True


def _warm() -> None:
    """Run once here what every command and supervisor runs first: an event loop with a task
    group and a cancel scope. What that builds lazily (caches, the interpreter's specialised
    bytecode) is then made once and shared, not written into each fork's own pages."""
    import anyio

    async def once() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 0)
            with anyio.move_on_after(0):
                await anyio.sleep(1)

    anyio.run(once)


def _warm_parsers() -> None:
    """Build the command line's argument collections here, once: every fork inherits them
    (cyclopts would otherwise build ``run``'s ~60 options twice in each, ~20 ms of CPU)."""
    from ._app import warm

    warm()


def _sweep(path: Path) -> None:
    """Remove what servers of other installs left (a reinstall changes the socket's name; a
    killed server leaves its files): each socket whose lock nobody holds, and that lock."""
    others = (str(lock) for lock in path.parent.glob("fork-*.sock.lock")
              if lock.name != f"{path.name}.lock")
    for lock in unheld(others):
        for left in (lock.removesuffix(".lock"), lock):
            with contextlib.suppress(OSError):
                os.unlink(left)


def _accept(listener: socket.socket, children: dict[int, tuple[int, socket.socket]],
            lock: int) -> None:
    conn, _ = listener.accept()
    fds = array.array("i")
    try:
        pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                             struct.calcsize("3i")))
        msg, ancdata, _flags, _addr = conn.recvmsg(_MAX, socket.CMSG_SPACE(16 * fds.itemsize))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        request = json.loads(msg)
        spawn = "work" in request
        # This user, and in this user namespace: a rootless container's root is this uid too,
        # and must not reach the server through a mounted /tmp or runtime directory.
        if (uid != os.getuid() or os.readlink(f"/proc/{pid}/ns/user") != _OWN_USERNS
                or not (4 <= len(fds) <= _SPAWN_FDS if spawn else len(fds) == 4)):
            raise PermissionError("not this user's, or not a command")
        # Nothing of the server's stays open in a fork, other callers' connections included:
        # a long-lived fork holding one would keep that caller from seeing the server go.
        inherited = [lock, listener.fileno(), *children,
                     *(c.fileno() for _, c in children.values())]
        child = os.fork()
        if child == 0 and spawn:
            _spawned(conn, request, list(fds), inherited)
        if child == 0:
            _command(conn, request, list(fds), pid, inherited)
        children[os.pidfd_open(child)] = (child, conn)
    except (OSError, ValueError):
        conn.close()
    finally:
        for fd in fds:
            os.close(fd)


def _reap(pidfd: int, children: dict[int, tuple[int, socket.socket]]) -> None:
    pid, conn = children.pop(pidfd)
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    reply = ({"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status)
             else {"code": os.waitstatus_to_exitcode(status)})
    with contextlib.suppress(OSError):
        conn.send(json.dumps(reply).encode())
    conn.close()


def _command(conn: socket.socket, request: dict[str, Any], fds: list[int], caller: int,
             inherited: list[int]) -> NoReturn:
    """The forked command: become the caller's ``carrier`` process, run it, report its code."""
    code = 125
    # Signals wait until the command runs: one that comes during the set-up (the caller passes
    # them on as soon as it knows this pid) must reach the command, not this code.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        _become(request, fds, inherited)
        sys.argv = ["carrier", *request["argv"]]
        from setproctitle import setproctitle

        setproctitle(" ".join(request.get("title") or sys.argv))  # ps shows the caller's command
        conn.send(json.dumps({"pid": os.getpid()}).encode())
        watch, released = _die_with(caller)

        # A supervisor this command forks into the background keeps neither (Python-level forks
        # only; the tools it runs are exec'd, and both are close-on-exec).
        def forget() -> None:
            conn.close()
            os.close(watch)

        os.register_at_fork(after_in_child=forget)
        _set_limits(request)  # last: the caller's process limit counts the watcher thread too
    except BaseException as e:  # the caller gets one line, never a silent 125 (nor server code)
        print(f"carrier: the fork server could not take this command: {e!r}", file=sys.stderr)
        os._exit(code)
    try:
        from . import _run, run_main

        def report(reported: int) -> None:
            """A foreground run's code, before its last cleanup: the caller's streams are
            let go (a reader of them sees the end), then the caller has it and may exit."""
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
            released.set()  # before the caller can exit: this fork outlives it now
            with contextlib.suppress(OSError):
                conn.send(json.dumps({"code": reported}).encode())

        _run.exit_reporter = report
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, [])  # a Ctrl-C held so far is raised here
        except KeyboardInterrupt:
            print("carrier: interrupted", file=sys.stderr)
            code = 130
        else:
            code = run_main(list(request["argv"]))
        if not released.is_set():
            with contextlib.suppress(OSError):
                conn.send(json.dumps({"code": code}).encode())
    finally:
        os._exit(code)


def _become(request: dict[str, Any], fds: list[int], inherited: list[int]) -> None:
    """In a fork: drop the server's descriptors and signal handlers, and take the caller's
    standard streams, directory (*fds*: 0, 1, 2, cwd; closed here), umask and environment."""
    for fd in inherited:
        os.close(fd)
    signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as any Python program starts
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    os.fchdir(fds[3])
    for fd in fds:
        os.close(fd)
    os.umask(int(request["umask"]))
    os.environ.clear()
    os.environ.update(request["env"])
    _reopen_std(bool(os.environ.get("PYTHONUNBUFFERED")))


def _set_limits(request: dict[str, Any]) -> None:
    """The caller's resource limits (those it sent)."""
    for name, (soft, hard) in request.get("limits", {}).items():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            resource.setrlimit(getattr(resource, name), (soft, hard))


def _spawned(conn: socket.socket, request: dict[str, Any], fds: list[int],
             inherited: list[int]) -> NoReturn:
    """The fresh fork for ``spawn``: fork once more (this child ends at once, the server reaps
    it), become what the caller described, say so, run the work."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    if os.fork() != 0:
        os._exit(0)
    try:
        os.setsid()
        _become(request, fds[:4], inherited)
        _set_limits(request)
        import pickle

        from setproctitle import setproctitle

        setproctitle(str(request["title"]))
        if request.get("logging"):  # as the command was told (--log-level, --log-format)
            from .._util._logging import configure

            configure(*request["logging"])
        work, args = pickle.loads(str(request["work"]).encode("latin-1"))  # only this user (SO_PEERCRED)
        conn.send(json.dumps({"pid": os.getpid()}).encode())
        conn.close()
    except BaseException:
        os._exit(125)  # said nothing: the caller forks the work itself
    code = 0
    try:
        _one_arena()
        signal.pthread_sigmask(signal.SIG_SETMASK, [int(s) for s in request["mask"]])
        work(*args, *fds[4:])
    except BaseException:
        import traceback

        traceback.print_exc()  # into the work's log (its stderr): its only trace
        code = 1
    finally:
        os._exit(code)


def _one_arena() -> None:
    """Keep the threads a supervisor starts (anyio's workers) in the main malloc arena rather
    than one arena each (glibc's ``M_ARENA_MAX``): each arena's pages are that process's own."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX


def _reopen_std(unbuffered: bool) -> None:
    """Standard streams on the caller's descriptors, made as Python makes them at start."""
    import io

    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), encoding, errors)  # noqa: SIM115
    for fd, name in ((1, "stdout"), (2, "stderr")):
        raw = open(fd, "wb", buffering=0 if unbuffered else -1, closefd=False)  # noqa: SIM115
        stream = io.TextIOWrapper(raw, encoding, "backslashreplace" if fd == 2 else errors,
                                  line_buffering=fd == 2 or raw.isatty(), write_through=unbuffered)
        setattr(sys, name, stream)


def _die_with(caller: int) -> tuple[int, threading.Event]:
    """Kill this command when its caller dies, as a plain ``carrier`` dies when killed (its
    detached supervisors fork off without this thread, and live on); the pidfd watched, and
    the event that releases the command from it (its code was reported: the caller exits)."""
    pidfd = os.pidfd_open(caller)
    released = threading.Event()

    def watch() -> None:
        select.select([pidfd], [], [])
        if not released.is_set():
            os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True, name="caller-watch").start()
    return pidfd, released


if __name__ == "__main__":  # serve from the module commands import, not this __main__ copy
    from carrier._cli import _zygote

    _zygote.serve(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
