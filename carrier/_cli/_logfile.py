"""Reading a container's log file: its last lines (``logs --tail``) and following it as it
grows (``logs -f``), woken by inotify and ending once the container's supervisor has ended.

The end is seen without polling: the supervisor holds ``supervisor.lock`` open (and locked)
for its whole life, and the kernel reports the close of that file to a watch on the
container's directory; each such event is followed by a non-blocking lock probe on a
descriptor this process keeps open (so the probe itself causes no event).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
from pathlib import Path
from typing import BinaryIO

from .._util._errors import CarrierError
from .._util._inotify import (
    IN_CLOSE_NOWRITE,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE_SELF,
    IN_MODIFY,
    IN_MOVE_SELF,
    watch_directory,
)

_WATCHED = IN_MODIFY | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF
_CHUNK = 1 << 16


def tail_offset(f: BinaryIO, lines: int) -> int:
    """Where the last *lines* lines of *f* start (a last line without a newline counts)."""
    end = f.seek(0, os.SEEK_END)
    if lines <= 0:
        return end
    pos, found = end, 0
    while pos > 0:
        size = min(_CHUNK, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        if pos + size == end and block.endswith(b"\n"):
            block = block[:-1]  # the file's final newline ends the last line, begins none
        i = len(block)
        while (i := block.rfind(b"\n", 0, i)) >= 0:
            found += 1
            if found == lines:
                return pos + i + 1
    return 0


def copy(f: BinaryIO, out: BinaryIO) -> None:
    """Copy what *f* holds from its position on to *out*, and flush it."""
    while chunk := f.read(_CHUNK):
        out.write(chunk)
    out.flush()


def follow(f: BinaryIO, container_dir: Path, out: BinaryIO) -> None:
    """Copy *f* to *out* as it grows until the container's supervisor has ended."""
    notify = watch_directory(container_dir, _WATCHED)
    if notify is None:
        raise CarrierError("cannot follow the log: no inotify instance or watch left for this user")
    try:
        try:  # after the watch is set: no release is missed
            lock = os.open(container_dir / "supervisor.lock", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            copy(f, out)
            return
        try:
            while True:
                copy(f, out)
                if _released(lock):
                    copy(f, out)
                    return
                select.select([notify], [], [])
                os.read(notify, 65536)
        finally:
            os.close(lock)
    finally:
        os.close(notify)


def _released(lock: int) -> bool:
    """Whether no supervisor holds the lock open on descriptor *lock* (a probe, let go at once)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    with contextlib.suppress(OSError):
        fcntl.flock(lock, fcntl.LOCK_UN)
    return True
