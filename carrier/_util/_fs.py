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
