"""Waiting for a file to appear, woken by inotify rather than by polling.

The runtime announces that the command runs by writing its PID file (``runc run
--pid-file``, written by rename once the command has been exec'd); this turns that into an
event an anyio task can wait on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

import anyio

_IN_CLOEXEC, _IN_NONBLOCK = 0o2000000, 0o4000
IN_MODIFY, IN_CLOSE_WRITE, IN_CLOSE_NOWRITE = 0x2, 0x8, 0x10
IN_MOVED_TO, IN_CREATE, IN_DELETE_SELF, IN_MOVE_SELF = 0x80, 0x100, 0x400, 0x800
_libc = ctypes.CDLL(None, use_errno=True)


def watch_directory(directory: Path, mask: int, *, blocking: bool = True) -> int | None:
    """An inotify descriptor watching *directory* for the events in *mask* (the caller closes
    it); None when the user's inotify instances or watches are used up."""
    fd: int = _libc.inotify_init1(_IN_CLOEXEC | (0 if blocking else _IN_NONBLOCK))
    if fd < 0:  # out of inotify instances (fs.inotify.max_user_instances, 128 by default)
        return None
    if _libc.inotify_add_watch(fd, os.fsencode(directory), mask) < 0:
        os.close(fd)
        return None
    return fd


async def wait_for_file(path: Path, *, give_up: anyio.Event | None = None) -> bool:
    """Wait until *path* exists; return False if *give_up* is set first.

    **Cancellation:** safe; the inotify descriptor is closed.
    """
    fd = watch_directory(path.parent, IN_CREATE | IN_MOVED_TO, blocking=False)
    if fd is None:
        return await _poll_for_file(path, give_up)
    try:
        found = False
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal found
                # Checked after the watch is set, so no event is lost; a stat, not blocking I/O.
                while not os.path.lexists(path):  # noqa: ASYNC240 - one stat
                    await anyio.wait_readable(fd)
                    with contextlib.suppress(BlockingIOError):
                        os.read(fd, 65536)
                found = True
                tg.cancel_scope.cancel()

            async def abandon() -> None:
                if give_up is not None:
                    await give_up.wait()
                    tg.cancel_scope.cancel()

            tg.start_soon(watch)
            tg.start_soon(abandon)
        return found
    finally:
        os.close(fd)


async def _poll_for_file(path: Path, give_up: anyio.Event | None) -> bool:
    """The fallback when the user's inotify instances are used up (hundreds of containers
    starting at once): a bounded-interval poll of the same condition."""
    while not os.path.lexists(path):  # noqa: ASYNC240 - one stat
        if give_up is not None and give_up.is_set():
            return False
        await anyio.sleep(0.005)
    return True
