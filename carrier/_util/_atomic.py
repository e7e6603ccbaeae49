"""Atomic file writes and advisory locks, so state on disk is never half-written."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    """Write *data* as JSON to *path* atomically: a reader sees the old file or the new one."""
    write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")


def write_bytes(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Write *data* to a temporary file beside *path*, fsync it, then rename it into place.
    Not *durable*: no fsync, for a file written anew before every use (a crash may lose its
    contents, never show half of them)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    with path.open("rb") as f:
        return json.load(f)


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or *shared*) ``flock`` on *path* (created if missing) for the block."""
    fd = lock_fd(path, shared=shared)
    try:
        yield
    finally:
        os.close(fd)


def lock_fd(path: Path, *, shared: bool = False) -> int:
    """Wait for an exclusive (or *shared*) ``flock`` on *path*; return the fd that holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def held(path: Path) -> bool:
    """Whether some process holds the ``flock`` on *path* (a supervisor's lock, held for its
    life); a missing file, or one in a directory being removed, is not held."""
    try:
        fd = try_lock(path, create=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def try_lock(path: Path, *, create: bool = True) -> int | None:
    """Take an exclusive ``flock`` on *path* without waiting; return the fd, or None if held.

    With ``create=False`` a missing file raises ``FileNotFoundError`` instead of being made
    (a probe must not put a lock file back into a directory that is being removed).
    """
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
