"""Safe unpacking of root filesystem tarballs.

Python's ``tarfile.tar_filter`` already refuses names that escape the target (``..``, and
paths that resolve through an unpacked symlink to outside it), strips leading slashes and clears
setuid/setgid bits. A root filesystem legitimately holds absolute symlinks (``/bin/sh ->
/bin/busybox``), so the stricter ``data`` filter is wrong for it. We add what ``tar_filter``
misses: hard links must resolve inside the target, and device nodes are skipped when the
unpacking user could not create them anyway.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

if sys.version_info >= (3, 12):
    import tarfile
else:  # Debian 12's Python 3.11.2 predates the extraction filters; use the maintained backport
    import backports.tarfile as tarfile

from ._errors import CarrierError

__all__ = ["UnsafeArchiveError", "remove_tree", "tarfile", "unpack"]


class UnsafeArchiveError(CarrierError):
    """An archive entry would write outside its target, or is otherwise refused."""


def _filter(rootless: bool) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    def member_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if rootless and (member.ischr() or member.isblk() or member.isfifo()):
            return None
        if member.islnk():  # hard link names are relative to the archive's root
            root = os.path.realpath(dest)
            target = os.path.realpath(os.path.join(root, member.linkname))
            if os.path.isabs(member.linkname) or os.path.commonpath([target, root]) != root:
                raise UnsafeArchiveError(f"hard link {member.name!r} points outside the tree")
        return tarfile.tar_filter(member, dest)

    return member_filter


def unpack(archive: Path, dest: Path, *, rootless: bool | None = None) -> None:
    """Unpack the uncompressed tar *archive* into the new directory *dest*."""
    if rootless is None:
        rootless = os.geteuid() != 0
    dest.mkdir(mode=0o700)
    try:
        with tarfile.open(archive, "r:") as tar:
            tar.extractall(dest, filter=_filter(rootless))
    except tarfile.FilterError as e:
        raise UnsafeArchiveError(f"refused archive entry: {e}") from None
    except (tarfile.TarError, EOFError) as e:
        raise CarrierError(f"cannot unpack {archive.name}: {e}") from None
    os.chmod(dest, 0o755)


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
