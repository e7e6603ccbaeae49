"""Copying files into and out of a container's root filesystem (``carrier cp``) as tar streams,
with Docker's placement rules and the tar safety rules the layers obey.

One side packs (:func:`pack`), the other unpacks (:func:`unpack`); the container's side runs in
a worker process that is root in the container's user namespace and chroots into the
container's root first (:mod:`._transfer_worker`), so every path there (``..``, absolute
symlinks) resolves inside the root, never on the host. On the host's side the archive from the
container is untrusted: besides ``tarfile.tar_filter`` (no absolute names, nothing that resolves
outside the target), no entry may pass through a symlink on disk and a hard link must name a
regular file already unpacked. Ownership is the unpacking user's, as Docker gives it: files
copied in belong to the container's root, files copied out to the host user.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .._images._extract import UnsafeArchiveError, tarfile
from .._util._errors import CarrierError

_ROOT_NAME = "."


def pack(src: str, out: IO[bytes]) -> None:
    """Write *src* (a file, directory or symlink, not followed) as a tar stream to *out*, its
    first entry being *src* itself under its base name; ``DIR/.`` packs the directory's contents
    (its first entry is ``.``), as ``docker cp`` reads it."""
    contents = src.endswith(("/.", "/./")) or src in (".", "./")
    path = os.path.normpath(src)
    if not os.path.lexists(path):
        raise CarrierError(f"no such file or directory: {src}")
    if contents and not os.path.isdir(path):
        raise CarrierError(f"not a directory: {src}")
    name = _ROOT_NAME if contents else (os.path.basename(path) or _ROOT_NAME)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(path, arcname=name, recursive=True)


def unpack(stream: IO[bytes], dest: str, *, untrusted: bool) -> None:
    """Unpack the tar *stream* that :func:`pack` wrote at *dest*, placed as ``docker cp``
    places it: into *dest* when it is a directory (the contents only for ``DIR/.``), else as
    *dest* itself (whose parent must exist). *untrusted* adds the checks an archive from a
    container needs when unpacked on the host."""
    try:
        _unpack(stream, dest, untrusted=untrusted)
    except tarfile.FilterError as e:
        raise UnsafeArchiveError(f"refused entry: {e}") from None
    except (tarfile.TarError, EOFError) as e:
        raise CarrierError(f"cannot copy: {e}") from None


def _unpack(stream: IO[bytes], dest: str, *, untrusted: bool) -> None:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        first = tar.next()
        if first is None:
            raise CarrierError("nothing to copy: the archive is empty")
        target, rename = _placement(first, dest)
        if first.name == _ROOT_NAME and not os.path.isdir(target):
            os.mkdir(target)  # DIR/. into a new directory (its parent exists: _placement)

        def members() -> Iterator[tarfile.TarInfo]:
            member: tarfile.TarInfo | None = first
            while member is not None:
                yield member
                member = tar.next()

        check = _filter(Path(target), rename, untrusted=untrusted)
        tar.extractall(target, members=members(), filter=check, numeric_owner=True)


def _placement(first: tarfile.TarInfo, dest: str) -> tuple[str, str | None]:
    """Where the archive goes: the directory to unpack into and the name its top entry gets
    there (None to keep it, or to unpack a ``.`` archive's contents)."""
    is_dir = first.isdir()
    path = os.path.normpath(dest)
    if os.path.isdir(path):  # follows symlinks: in the container this runs chrooted
        if first.name == _ROOT_NAME:
            return path, None
        return path, None if first.name == os.path.basename(first.name) else first.name
    if os.path.lexists(path) and not os.path.islink(path):
        if is_dir:
            raise CarrierError(f"cannot copy a directory to a file: {dest}")
        return os.path.dirname(path) or "/", os.path.basename(path)
    if dest.endswith("/"):
        raise CarrierError(f"destination directory does not exist: {dest}")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise CarrierError(f"no such directory: {parent}")
    if first.name == _ROOT_NAME:  # DIR/. into a new directory: it is made
        return path, None
    return parent, os.path.basename(path)


def _filter(target: Path, rename: str | None, *,
            untrusted: bool) -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo | None]:
    """The member filter: the top entry renamed, ``tar_filter``'s rules, owners dropped (the
    unpacking user owns everything), devices skipped where they cannot be made, and on the host
    no path through a symlink and hard links only to regular files unpacked already."""
    rootless = os.geteuid() != 0
    top: str | None = None
    unpacked: set[Path] = set()

    def renamed(name: str) -> str:
        nonlocal top
        if rename is None:
            return name
        head, sep, rest = name.partition("/")
        if top is None:
            top = head
        return rename + sep + rest if head == top else name

    def check(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        member = member.replace(name=renamed(member.name), deep=False)
        if member.islnk():
            member = member.replace(linkname=renamed(member.linkname), deep=False)
        if rootless and (member.ischr() or member.isblk()):
            print(f"carrier: skipped device {member.name!r}: a rootless user cannot make "
                  "device nodes", file=sys.stderr)
            return None
        filtered = tarfile.tar_filter(member, path)
        if untrusted:
            path_on_disk = _inside(target, filtered.name, member.name)
            if filtered.islnk():
                linked = _inside(target, filtered.linkname, member.name)
                if linked not in unpacked or not stat.S_ISREG(os.lstat(linked).st_mode):
                    raise UnsafeArchiveError(f"refused entry {member.name!r}: hard link to "
                                             f"{member.linkname!r}, not a file it unpacked")
            if not filtered.isdir() and os.path.islink(path_on_disk):
                os.unlink(path_on_disk)  # replaced, never written through
            if filtered.isreg():
                unpacked.add(path_on_disk)
        mode = None if filtered.mode is None else filtered.mode & ~0o6000
        return filtered.replace(uid=None, gid=None, uname=None, gname=None, mode=mode,
                                deep=False)

    return check


def _inside(target: Path, rel: str, entry: str) -> Path:
    """*target*/*rel*, checked component by component with ``lstat``: no ``..``, no absolute
    name, and no component but a last one that is a symlink (nothing written through one)."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if rel.startswith("/") or ".." in parts:
        raise UnsafeArchiveError(f"refused entry {entry!r}: outside the destination")
    path = target
    for i, part in enumerate(parts):
        path = path / part
        if i < len(parts) - 1 and os.path.islink(path):
            raise UnsafeArchiveError(f"refused entry {entry!r}: it passes through the symlink "
                                     f"{part!r}")
    return path


def worker_argv(cdir: Path, driver: str, container_pid: int | None, action: str,
                path: str, *, enter: list[str] | None = None) -> list[str]:
    """The command line of the worker that packs or unpacks *path* in a container's root, as
    root of its user namespace: through a running container's own root (``/proc/PID/root``,
    its volumes included), or, for a stopped container of the ``copy`` driver, its root
    directory in a user namespace of our own (*enter*: into a holder that has the container's
    id maps; else one mapping our own id alone). Other stopped containers have no root mounted
    anywhere: refused in one line."""
    rootless = os.geteuid() != 0
    expect = ""
    if container_pid is not None:
        root = f"/proc/{container_pid}/root"
        prefix: list[str] = []
        if _own_userns(container_pid):
            prefix = ["nsenter", "-t", str(container_pid), "-U", "--preserve-credentials"]
        try:  # the worker checks that the PID still names the container (not a reused PID)
            expect = os.readlink(f"/proc/{container_pid}/ns/mnt")
        except OSError:
            raise CarrierError("the container stopped while the copy began") from None
    elif driver == "copy" and (cdir / "rootfs").is_dir():
        root = str(cdir / "rootfs")
        prefix = enter if enter is not None else (
            ["unshare", "--user", "--map-root-user"] if rootless else [])
    else:
        raise CarrierError(f"the root filesystem of a stopped container is reachable only with "
                           f"the copy storage driver (this one uses {driver}): start it first")
    from .._util._process import python_module  # here: the worker itself never needs anyio

    return [*prefix, *python_module("carrier._storage._transfer_worker", root, action, path,
                                     expect)]


def _own_userns(pid: int) -> bool:
    """Whether *pid* is in a user namespace other than ours."""
    try:
        return os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    except OSError:
        raise CarrierError("the container stopped while the copy began") from None
