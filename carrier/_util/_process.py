"""Child processes waited on through pidfds.

Waiting uses ``pidfd_open`` + ``anyio.wait_readable``: no polling, no watcher threads, the same
on asyncio and trio. (anyio's own ``Process.aclose()`` kills at once when cancelled; the
container's graceful stop is the supervisor's, see ``_supervisor``.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import subprocess
import sys
import tempfile
import termios
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, final

import anyio

from ._atomic import write_bytes


def start_time(pid: int) -> int | None:
    """The kernel's start time of *pid* (``/proc/PID/stat`` field 22), to detect PID reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[19])


def same_process(pid: int, start: int | None) -> bool:
    """Whether *pid* is still the process that had start time *start* (not a reused PID)."""
    return start is not None and start_time(pid) == start


def discards(pid: int, signum: int) -> bool:
    """Whether the kernel discards *signum* sent to *pid* from outside: *pid* is the init of a
    PID namespace of its own (``NSpid`` ends in 1) and has no handler for it (``SigCgt``).
    Such an init dies only of SIGKILL, so a graceful stop has nothing to wait for."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            fields = dict(line.split(b":", 1) for line in f.read().splitlines() if b":" in line)
        nspid, caught = fields[b"NSpid"].split(), int(fields[b"SigCgt"].strip(), 16)
    except (OSError, KeyError, ValueError):
        return False
    return len(nspid) > 1 and nspid[-1] == b"1" and not caught >> (signum - 1) & 1


def read_pid_file(path: Path) -> tuple[int, int] | None:
    """A ``PID START_TIME`` file as written for helpers; None if missing or malformed."""
    try:
        pid, start = path.read_text().split()
        return int(pid), int(start)
    except (OSError, ValueError):
        return None


def write_pid_file(path: Path, pid: int) -> None:
    """Record *pid* with its start time (``PID START_TIME``), atomically, so that a later
    command can end exactly this process even if its supervisor died."""
    write_bytes(path, f"{pid} {start_time(pid)}\n".encode())


def kill_recorded(path: Path) -> None:
    """SIGKILL the process a :func:`write_pid_file` file names, if it is still that process;
    remove the file."""
    if (recorded := read_pid_file(path)) is not None:
        with contextlib.suppress(ProcessLookupError):
            fd = os.pidfd_open(recorded[0])
            try:
                if same_process(*recorded):  # checked after the pidfd pins the PID
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            finally:
                os.close(fd)
    path.unlink(missing_ok=True)


_unreaped: set[int] = set()  # children spawned here whose status a Child still waits for


def has_waiter(pid: int) -> bool:
    """Whether *pid* is a child spawned here that a :class:`Child` will reap (a subreaper's
    orphan reaping must leave it alone, ``_runtime._reaper``)."""
    return pid in _unreaped


class Reapable:
    """A process held by a pidfd and reaped by its :meth:`wait`: signalled race-free, and
    killed and reaped in one step (a :class:`Child` we spawned, or an adopted init)."""

    pid: int
    pidfd: int
    returncode: int | None

    async def wait(self) -> int:
        """Wait for the process to end and reap it; its return code."""
        raise NotImplementedError

    def signal(self, sig: int) -> None:
        """Send *sig* unless the process has been reaped (pidfds make this race-free)."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, sig)

    async def kill(self) -> int:
        """SIGKILL and reap. **Cancellation:** shielded."""
        with anyio.CancelScope(shield=True):
            self.signal(signal.SIGKILL)
            code = await self.wait()
        return code


@final
class Child(Reapable):
    """A child process with a pidfd. Built only by :func:`spawn`."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pidfd = os.pidfd_open(popen.pid)
        self.returncode: int | None = None
        _unreaped.add(popen.pid)

    async def wait(self) -> int:
        """Wait for the child to exit and reap it; return ``Popen``-style returncode.

        **Cancellation:** safe; the child keeps running and can be waited on again.
        """
        if self.returncode is None:
            await anyio.wait_readable(self.pidfd)
            self.returncode = self.popen.wait()
            _unreaped.discard(self.pid)
            os.close(self.pidfd)
        return self.returncode


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn(
    argv: Sequence[str],
    *,
    stdin: int | IO[Any] | None = subprocess.DEVNULL,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
    new_session: bool = True,
    pass_fds: Sequence[int] = (),
    controlling_tty: bool = False,
) -> Child:
    """Start *argv* as a child of this process, by default in a session of its own: a
    terminal's Ctrl-C, Ctrl-\\ or hang-up then reaches only the supervisor, which decides what
    the container gets (a holder or helper in the terminal's process group would die first)."""
    popen = subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=new_session,
        pass_fds=tuple(pass_fds),
        # Its standard input (a terminal) becomes its controlling terminal, in its new session.
        preexec_fn=_take_terminal if controlling_tty else None,
    )
    return Child(popen)


def python_module(module: str, *args: str) -> list[str]:
    """The command line that runs Carrier's *module* with ``python -m``, importing this very
    ``carrier`` package, never one that lies in the caller's working directory.

    ``-m`` puts the working directory first on ``sys.path``; ``-P`` would drop it but also
    drop this package when it runs from a checkout, so the helper starts where this package
    lies instead, as the fork server does (``_fastpath``). It runs through ``env -C`` so that
    the command line works behind any prefix (``nsenter -m`` moves to ``/``); every helper
    takes absolute paths only.
    """
    return ["env", "-C", _PACKAGE_PARENT, sys.executable, "-m", module, *args]


_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the directory above ``carrier/``


def check_sigchld() -> None:
    """Refuse to start children whose exit status could not be read: with SIGCHLD ignored (a
    library caller's own setting, or inherited across exec), the kernel reaps each child at
    once. The command line resets it (``_cli.console``); a library caller's is not ours to."""
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN:
        from ._errors import CarrierError

        raise CarrierError("SIGCHLD is ignored in this process, so no child's exit status can be "
                           "read; restore it first: signal.signal(signal.SIGCHLD, signal.SIG_DFL)")


def raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard one, as Podman does: a supervised container
    holds about ten descriptors (pidfds, pipes, locks, logs, sockets), so the usual soft limit
    of 1024 would cap one process near 100 containers. The containers inherit it (Docker gives
    them far more)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def exit_status(returncode: int) -> int:
    """Docker's exit status for a ``Popen`` returncode: the code, or 128+N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


async def run(argv: Sequence[str], *, check: bool = True) -> tuple[int, bytes, bytes]:
    """Run a short helper command to completion; return its status, stdout and stderr.

    **Cancellation:** the helper is killed and reaped before the cancellation propagates.
    """
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        child = spawn(argv, stdout=out_file, stderr=err_file)  # files: no pipe can fill up
        try:
            code = await child.wait()
        except BaseException:
            await child.kill()
            raise
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if check and code != 0:
        raise RuntimeError(f"{argv[0]} failed ({code}): {err.decode(errors='replace').strip()}")
    return code, out, err
