"""``carrier attach``: this terminal (or these streams) connected to a running container through
its supervisor's control socket, as ``podman attach`` does; the detach keys leave it running."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import struct
import sys
import termios
import tty
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._runtime._terminal import DEFAULT_DETACH_KEYS, DetachKeys, parse_detach_keys, saved_terminal
from .._util._errors import CarrierError
from ._common import open_root

if TYPE_CHECKING:
    import socket

    from .._state._records import Record
    from .._util._root import Root

DETACHED = -1
"""What a session returns when the detach keys ended it."""


def attach(
    container: str,
    /,
    *,
    detach_keys: str = DEFAULT_DETACH_KEYS,
    no_stdin: bool = False,
) -> int:
    """Attach this terminal to a running container: its output from now on, the keyboard to
    its stdin (a container started with -i); exits with the container's exit code, or 0 on
    the detach keys.

    Parameters
    ----------
    container: str
        Container name, id or id prefix.
    detach_keys: str
        The keys that detach and leave the container running: ctrl-<x> and single
        characters, comma-separated ("" disables).
    no_stdin: bool
        Do not pass the keyboard on (the container's output only; no detach keys).
    """
    from .._state._records import Containers

    keys = parse_detach_keys(detach_keys)
    root = open_root()
    found = Containers(root)
    record = found.load(found.resolve(container))
    code = attach_to(root, record, keys, stdin=not no_stdin)
    return 0 if code == DETACHED else code


def attach_to(root: Root, record: Record, keys: bytes, *, stdin: bool) -> int:
    """Attach to *record*'s running container; its exit code, or :data:`DETACHED`."""
    import json

    import anyio

    from .._state._records import Containers, Status
    from .._supervision._control import connect

    containers = Containers(root)
    if record.status is not Status.RUNNING or not containers.supervisor_alive(record.id):
        raise CarrierError(f"container {record.name} is not running: you can only attach to "
                           "running containers")
    stdin = stdin and record.spec.interactive  # as Podman: keys only for a -i container
    terminal = record.spec.tty and stdin and os.isatty(0)
    rows, cols = _size(0 if terminal else 1)
    request = {"attach": {"rows": rows, "cols": cols} if terminal else {}}
    sock = connect(containers.dir(record.id), json.dumps(request).encode() + b"\n")
    if sock is None:
        raise CarrierError(f"container {record.name} is not running: you can only attach to "
                           "running containers")
    with sock, _raw(terminal):
        code = anyio.run(_session, sock, DetachKeys(keys), stdin, terminal, record.spec.tty)
    if code is None:  # the supervisor went away without a word: its record tells
        with contextlib.suppress(CarrierError):
            after = containers.load(record.id)
            if after.status is Status.EXITED and after.exit_code is not None:
                return after.exit_code
        raise CarrierError(f"container {record.name}: its supervisor ended the attach session")
    return code


@contextlib.contextmanager
def _raw(terminal: bool) -> Iterator[None]:
    """This terminal in raw mode for the session (keys travel as bytes), restored on every
    way out."""
    if not terminal:
        yield
        return
    with saved_terminal(0):
        tty.setraw(0, termios.TCSADRAIN)  # what was typed ahead is kept, not flushed
        yield


def _size(fd: int) -> tuple[int, int]:
    """The window size of terminal *fd* (0, 0 if it is none)."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return 0, 0
    return rows, cols


async def _session(sock: socket.socket, keys: DetachKeys, stdin: bool,
                   terminal: bool, tty: bool) -> int | None:
    """Relay until the container's exit code arrives (it), the detach keys (DETACHED) or the
    connection ends (None). The end of our input closes a container's stdin pipe (not a
    *tty*'s terminal), as Podman's attach does."""
    import anyio
    from anyio.abc import TaskGroup

    from .._supervision._attach import (
        EXIT,
        RESIZE,
        STDERR,
        STDIN,
        STDIN_END,
        STDOUT,
        FrameReader,
        frame,
        send_all,
    )

    sock.setblocking(False)
    result: list[int | None] = [None]
    sending = anyio.Lock()

    async def send(data: bytes) -> None:
        async with sending:  # whole frames, never interleaved
            await send_all(sock, data)

    async def output(tg: TaskGroup) -> None:
        reader = FrameReader()
        while True:
            await anyio.wait_readable(sock)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                break
            for kind, payload in reader.feed(data):
                if kind in (STDOUT, STDERR):  # a terminal's output is all one stream
                    _write_all(1 if kind == STDOUT or terminal else 2, payload)
                elif kind == EXIT:
                    result[0] = int(payload)
                    tg.cancel_scope.cancel()
                    return
        tg.cancel_scope.cancel()

    mode = os.fstat(0).st_mode
    pollable = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)

    async def keyboard(tg: TaskGroup) -> None:
        while True:
            try:
                if pollable:
                    await anyio.wait_readable(0)
                    data = os.read(0, 65536)
                else:  # a file or /dev/null (epoll refuses them): a read never waits
                    data = await anyio.to_thread.run_sync(os.read, 0, 65536)
            except OSError:
                return
            if not data:  # the container keeps running, we keep watching it
                if not tty:
                    await send(frame(STDIN_END))  # its stdin reads EOF
                return
            passed, detached = keys.feed(data)
            if passed:
                await send(frame(STDIN, passed))
            if detached:
                result[0] = DETACHED
                tg.cancel_scope.cancel()
                return

    async def resizes() -> None:
        with anyio.open_signal_receiver(signal.SIGWINCH) as signals:
            async for _ in signals:
                rows, cols = _size(0)
                await send(frame(RESIZE, struct.pack(">HH", rows, cols)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(output, tg)
        if stdin:
            tg.start_soon(keyboard, tg)
        if terminal:
            tg.start_soon(resizes)
    return result[0]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            import select

            select.select([], [fd], [], 5)  # a non-blocking stdout that is full: wait for room
        except BrokenPipeError:
            sys.exit(141)
