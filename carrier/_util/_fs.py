"""File-tree removal that also copes with what containers leave behind."""

from __future__ import annotations

import os
import shutil
import stat
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
