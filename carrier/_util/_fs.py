"""File-tree removal that also copes with what containers leave behind, and the files of
owners that have gone."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path


def remove_tree(path: Path) -> None:
    """Remove *path*, also where the container left directories without owner permissions."""
    if not os.path.lexists(path):
        return
    try:
        shutil.rmtree(path)
    except PermissionError:
        os.chmod(path, stat.S_IRWXU)
        for dirpath, dirnames, _ in os.walk(path):  # top-down: open each directory up first
            for d in dirnames:
                child = os.path.join(dirpath, d)
                if not os.path.islink(child):
                    os.chmod(child, stat.S_IRWXU)
        shutil.rmtree(path)


def discard_ready(fd: int, limit: int = 1 << 20) -> int:
    """Read and drop what non-blocking *fd* holds now (at most *limit* bytes); how much."""
    dropped = 0
    while dropped < limit:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        dropped += len(chunk)
    return dropped


def unheld(locks: Iterable[str], *, create: bool = False) -> Iterator[str]:
    """Each of *locks* (paths of ``flock`` files; with *create*, made if missing) that no live
    process holds, held by us while the caller removes what its dead owner left."""
    for lock in locks:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its owner lives
        else:
            yield lock
        finally:
            os.close(fd)


def unlink_own(path: str, inode: int) -> None:
    """Remove the file at *path* if it is still the one with *inode* (a socket this process
    bound: a newer owner may have bound its own there since)."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass
