"""The pieces safe unpacking needs: a ``tarfile`` with extraction filters (the maintained
backport on Debian 12's Python 3.11.2) and the error for refused entries; and removal of trees
that a container left without owner permissions."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

if sys.version_info >= (3, 12):
    import tarfile
else:  # Debian 12's Python 3.11.2 predates the extraction filters; use the maintained backport
    import backports.tarfile as tarfile

from ._errors import CarrierError

__all__ = ["UnsafeArchiveError", "remove_tree", "tarfile"]


class UnsafeArchiveError(CarrierError):
    """An archive entry would write outside its target, or is otherwise refused."""


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
