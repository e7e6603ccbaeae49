"""The client side of the fork server (``_zygote``): hand a command line to a warm process.

``carrier`` first tries the fork server of this user, this installed Carrier and these
namespaces. It sends the command line, the environment, the umask and its own standard input,
output, error and working directory (the descriptors themselves, never a copy of the bytes),
then only relays signals to the process that runs the command and exits as that process does.
No server yet: the command runs here, as it always did, and a server is started beside it for
the next command. The server is skipped when standard input is a terminal (an interactive
session keeps its own process) and with ``CARRIER_FORK_SERVER=0``.

Kept to the standard library: this runs before anything else is imported.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import stat
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_MAX = 1 << 16


def socket_path() -> Path | None:
    """This server's socket (:func:`socket_file` as a ``Path``), for tests and benchmarks."""
    from pathlib import Path

    name = socket_file()
    return None if name is None else Path(name)


def socket_file() -> str | None:
    """This server's socket, in a 0700 directory of this user; None where there can be none.

    The name holds a digest of what a warm process must share with its caller: the installed
    Carrier (every module's path, size and mtime), the interpreter, the user, mount, net and
    PID namespaces (a command run in another namespace must run there) and the cgroup. Plain ``os`` calls, not
    ``pathlib``: this runs on every command, before anything else is imported."""
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/carrier-{os.getuid()}"
    directory = os.path.join(base, "carrier") if "XDG_RUNTIME_DIR" in os.environ else base
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None  # someone else's, or open to others: never trust it
    # The venv and the interpreter, however it was named (python, python3.11).
    digest = hashlib.sha256(f"{sys.prefix}:{os.path.realpath(sys.executable)}".encode())
    for path in _modules(_package()):
        with contextlib.suppress(OSError):
            info = os.stat(path)
            digest.update(f"{path}:{info.st_size}:{info.st_mtime_ns}".encode())
    for ns in ("user", "mnt", "net", "pid"):
        with contextlib.suppress(OSError):
            digest.update(os.readlink(f"/proc/self/ns/{ns}").encode())
    # And the cgroup: the server (and the keeper it forks) lives in its starter's, so a
    # command from a shell must not be forked into, say, a systemd unit's, to die with it.
    with contextlib.suppress(OSError), open("/proc/self/cgroup", "rb") as f:
        digest.update(f.read())
    return os.path.join(directory, f"fork-{digest.hexdigest()[:16]}.sock")


def _package() -> str:
    """The directory of the ``carrier`` package this process runs."""
    return os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def _modules(package: str) -> list[str]:
    """Every ``.py`` file under *package*, sorted."""
    found = [os.path.join(top, name) for top, _dirs, names in os.walk(package)
             for name in names if name.endswith(".py")]
    return sorted(found)


def enabled() -> bool:
    """Whether to use the fork server for this command."""
    if os.environ.get("CARRIER_FORK_SERVER", "1") == "0":
        return False
    with contextlib.suppress(OSError):
        return not os.isatty(0)
    return True


def run(argv: list[str]) -> int | None:
    """Run *argv* in the fork server and return its exit code (or die of its signal); None
    when there is no server, after starting one for the next command."""
    path = socket_file()
    if path is None:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        _start_server(path)
        return None
    with conn:
        code = _relay(conn, argv)
    if code is None:  # the server went away before it took the command (killed, crashed)
        _start_server(path)
    return code


def _start_server(path: str) -> None:
    """Start the server in its own session, not waited for (it takes its own lock; it imports
    once this command has ended, see ``_zygote``). It starts
    where this ``carrier`` package lies, so that ``-m`` imports this very package (the digest's),
    never one that happens to lie in the caller's working directory."""
    import subprocess  # here only: a warm command never needs it (~5 ms of the client's start)

    with contextlib.suppress(OSError):
        subprocess.Popen([sys.executable, "-m", "carrier._cli._zygote", path, str(os.getpid())],
                         cwd=os.path.dirname(_package()),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True,
                         env={**os.environ, "CARRIER_FORK_SERVER": "0"})


def caller_state() -> dict[str, object]:
    """What a fork of the server takes over from this process besides its descriptors: the
    environment, the umask and the resource limits (also sent by ``_spawn``)."""
    import resource

    umask = os.umask(0o022)
    os.umask(umask)
    limits = {n: list(resource.getrlimit(getattr(resource, n)))
              for n in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE")}
    return {"env": dict(os.environ), "umask": umask, "limits": limits}


def _relay(conn: socket.socket, argv: list[str]) -> int | None:
    """Hand *argv* over and relay until it ends; None if the server went away before a
    command was forked for it (then nothing ran, and it runs here)."""
    request = json.dumps({"argv": argv, **caller_state(), "title": sys.orig_argv}).encode()
    cwd = os.open(".", os.O_PATH)
    try:
        fds = array.array("i", [0, 1, 2, cwd])
        conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    except OSError:
        return None  # the server went away: nothing ran yet
    finally:
        os.close(cwd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    pending: list[int] = []
    from .._util._signals import FORWARDED

    for sig in FORWARDED:
        signal.signal(sig, lambda n, _f: pending.append(n))
    child: int | None = None
    while True:
        ready = select.select([conn.fileno(), wake_r], [], [])[0]
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 512)
        if conn.fileno() in ready:
            try:
                data = conn.recv(_MAX)
            except OSError:
                data = b""
            if not data and child is None:
                _restore(FORWARDED, pending)
                return None
            if not data:
                print("carrier: the command ended without an exit status (its fork server "
                      "ended first)", file=sys.stderr)
                return 125
            reply = json.loads(data)
            if "pid" in reply:
                child = int(reply["pid"])
            elif "code" in reply:
                return int(reply["code"])
            elif "signal" in reply:
                _die_of(int(reply["signal"]))
        while child is not None and pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, pending.pop(0))


def _restore(signals: tuple[signal.Signals, ...], pending: list[int]) -> None:
    """Signals as they were, for the command to run here; one that came meanwhile is raised
    again, so that it reaches the command as it would have."""
    signal.set_wakeup_fd(-1)
    for sig in signals:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for number in pending:
        os.kill(os.getpid(), number)


def _die_of(sig: int) -> None:
    """End as the command's process ended: of the same signal (as a shell reports it)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)  # a signal that does not end a process by default (SIGCHLD, SIGWINCH)
