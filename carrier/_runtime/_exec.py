"""Running another process inside a running container, through the runtime's own ``exec``.

``runc exec`` joins every namespace of the container (user, mount, PID, network, UTS, IPC) the
way the runtime set them up, applies the container's capabilities, no-new-privileges and rlimits
(``_security``; the runtime keeps its seccomp filter), and reports the process's exit status.
With ``--tty`` in the foreground it allocates the PTY inside, puts our terminal in raw mode and
follows SIGWINCH itself. Doing the same with setns by hand would
re-implement the runtime. See docs/exec.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import anyio

from .._sandbox._enter import enter_argv
from .._state._records import Containers, Record, Status
from .._storage._rootfs import running_view
from .._util import _process
from .._util._atomic import write_json
from .._util._errors import ConflictError, ExecTimeoutError
from .._util._inotify import wait_for_file
from .._util._root import Root
from ._bundle import container_env, parse_env, process
from ._oci import resolve, start_failure, transient_failure
from ._terminal import saved_terminal, session_env


def running_record(root: Root, ref: str) -> Record:
    """The container *ref*, which must be running (exit 125 otherwise)."""
    containers = Containers(root)
    record = containers.find(ref)
    if record.status is Status.EXITED:
        raise ConflictError(f"container {record.name} has exited (code {record.exit_code}): "
                            "exec needs a running container")
    if record.status is not Status.RUNNING or not containers.supervisor_alive(record.id):
        raise ConflictError(f"container {record.name} is not running")
    return record


@contextlib.contextmanager
def _scratch(cdir: Path) -> Iterator[tuple[Path, Path, Path]]:
    token = secrets.token_hex(6)
    files = (cdir / f"exec-{token}.json", cdir / f"exec-{token}.log", cdir / f"exec-{token}.pid")
    try:
        yield files
    finally:
        for f in files:
            f.unlink(missing_ok=True)


async def exec_in(
    root: Root,
    record: Record,
    argv: Sequence[str],
    *,
    env: Sequence[str] = (),
    workdir: str | None = None,
    user: str | None = None,
    interactive: bool = False,
    terminal: bool = False,
    session: bool = False,
    output: IO[bytes] | None = None,
    error: IO[bytes] | None = None,
    stdin: IO[bytes] | None = None,
    timeout: float | None = None,
    detach: bool = False,
    on_detached: Callable[[int], None] | None = None,
) -> int:
    """Run *argv* in *record*'s container; return its exit status (126/127 as for ``run``).
    With *detach*, return 0 as soon as it has started (``exec -d``); it runs on inside, and
    *on_detached* gets its PID (the runtime has exited: a subreaper caller has adopted it).

    *session* sets the environment of an interactive login (TERM, HOME, USER, SHELL, LANG).
    With *output* (health checks, the library), stdout goes there, stderr to *error* (or there
    too), stdin comes from *stdin* (else nothing), and our signals are left alone; after
    *timeout* seconds the command is killed and :class:`ExecTimeoutError` raised. Otherwise
    the streams are ours, and Ctrl-C goes to the command.

    **Cancellation:** the command inside and the runtime's exec are killed and reaped before
    it propagates.
    """
    cdir = Containers(root).dir(record.id)
    rootfs = running_view(cdir, record.spec.storage_driver, record.container_pid)
    spec = record.spec
    base = container_env(spec)
    user = user if user is not None else spec.user
    proc = process(list(argv), base, workdir or spec.cwd, user, rootfs, spec, terminal=terminal)
    if session:
        path = next(e for e in base if e.startswith("PATH="))
        base = parse_env(session_env(rootfs, proc["user"]["uid"], path, os.environ.get("TERM"),
                                     os.environ.get("LANG")), base=base)
    proc["env"] = parse_env(env, base=base)
    binary = resolve(spec.runtime)
    with _scratch(cdir) as (process_file, log, pid_file):
        write_json(process_file, proc)
        prefix: list[str] = []
        fuse = record.spec.storage_driver == "fuse-overlayfs"
        if record.holder_pid is not None and (os.geteuid() != 0 or fuse):  # see _group._start
            prefix = enter_argv(record.holder_pid, userns=record.spec.network != "host", mount=fuse)
        cmd = [*prefix, binary, "--root", str(root.runtime), "--log", str(log), "--log-format", "json",
               "exec", "--process", str(process_file)]
        for attempt in (1, 2):
            code = await _attempt(cmd, record.id, pid_file, detach=detach, terminal=terminal,
                                  interactive=interactive, output=output, error=error,
                                  stdin=stdin, timeout=timeout, argv=argv, name=record.name)
            if code == 0 or attempt == 2 or not transient_failure(log):
                break
            # runc's init died before the command ran (runc 1.1, rarely): nothing ran, so once
            # more. In the foreground runc has said so on our stderr already; say why it goes on.
            log.write_bytes(b"")
            pid_file.unlink(missing_ok=True)
            if output is None and not detach:
                print("carrier: the runtime failed before the command started; trying once more",
                      file=sys.stderr, flush=True)
        if code == 0 and detach and on_detached is not None:
            on_detached(int(pid_file.read_text()))
        failure = start_failure(log) if code else None
    # The runtime has printed its own message about a failed start on our stderr.
    return failure[0] if failure is not None else code


async def _attempt(cmd: list[str], cid: str, pid_file: Path, *, detach: bool, terminal: bool,
                   interactive: bool, output: IO[bytes] | None, error: IO[bytes] | None,
                   stdin: IO[bytes] | None, timeout: float | None, argv: Sequence[str],
                   name: str) -> int:
    """One run of the runtime's exec, as :func:`exec_in` describes; its exit status."""
    if detach:  # the runtime returns once the command runs; nothing is attached to it
        child = _process.spawn([*cmd, "--detach", "--pid-file", str(pid_file), cid],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        return _process.exit_status(await child.wait())
    if terminal:
        return await _exec_tty(cmd, cid)
    if output is not None:
        status = await _exec_captured(cmd, cid, pid_file, output, error, stdin, timeout)
        if status is None:
            raise ExecTimeoutError(f"exec {' '.join(argv)!r} in {name}: not done "
                                   f"within {timeout:g} s, so it was killed")
        return status
    child = _process.spawn([*cmd, cid], new_session=False,  # our Ctrl-C reaches it
                           stdin=None if interactive else subprocess.DEVNULL)
    return await _wait(child)


async def _exec_captured(cmd: list[str], cid: str, pid_file: Path, output: IO[bytes],
                         error: IO[bytes] | None, stdin: IO[bytes] | None,
                         timeout: float | None) -> int | None:
    """The runtime's exec with our files as its streams; its exit status, or None when
    *timeout* passed first and the command inside was killed."""
    child = _process.spawn([*cmd, "--pid-file", str(pid_file), cid], stdout=output,
                           stderr=output if error is None else error,
                           stdin=subprocess.DEVNULL if stdin is None else stdin)
    code: int | None = None
    try:
        with anyio.move_on_after(math.inf if timeout is None else timeout):
            code = _process.exit_status(await child.wait())
    finally:
        if code is None:  # timed out or cancelled: the command inside goes first, then exec
            await _kill_exec(child, pid_file)
    return code


async def _kill_exec(child: _process.Child, pid_file: Path) -> None:
    """SIGKILL the command that the runtime's exec started (killing only the runtime would
    leave it running inside), then the runtime's exec, and reap it. **Cancellation:** shielded."""
    with anyio.CancelScope(shield=True):
        # The command may run a moment before the runtime writes its PID file: wait for the
        # file (or the runtime's end), else the command would outlive us inside.
        with anyio.move_on_after(5):  # a guard: runc writes it as soon as the command runs
            async with anyio.create_task_group() as tg:
                gone = anyio.Event()

                async def runtime_gone() -> None:
                    await child.wait()
                    gone.set()

                tg.start_soon(runtime_gone)
                await wait_for_file(pid_file, give_up=gone)
                tg.cancel_scope.cancel()
        with contextlib.suppress(OSError, ValueError):
            pidfd = os.pidfd_open(int(pid_file.read_text()))  # noqa: ASYNC240 - a few bytes
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            finally:
                os.close(pidfd)
        with anyio.move_on_after(5):  # a guard: the runtime exits once its command is gone
            await child.wait()
        await child.kill()


async def _wait(child: _process.Child) -> int:
    # Ctrl-C from our terminal reaches the runtime (same process group), which forwards it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return _process.exit_status(await child.wait())
    except BaseException:
        await child.kill()
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


async def _exec_tty(cmd: list[str], cid: str) -> int:
    """``exec --tty`` in the foreground: the runtime allocates the PTY inside, puts our terminal
    in raw mode, copies both ways and follows SIGWINCH; we guard the terminal's settings."""
    with saved_terminal(0):
        child = _process.spawn([*cmd, "--tty", cid], stdin=None, new_session=False)
        return await _wait(child)
