"""The shared layer store: each layer unpacked once, by the digest of its uncompressed tar.

``layers/sha256/<hex>/diff`` is the layer's tree in the form overlayfs reads as a lower
directory: a deleted path (an OCI ``.wh.NAME`` entry) is a 0/0 character device, and an opaque
directory (``.wh..wh..opq``) carries the ``user.overlay.opaque`` xattr. Every storage driver
reads that one form (``_storage``). ``layers/sha256/<hex>/size`` records the tar's size.

A layer is unpacked into a staging directory while its digest is computed in the same pass,
and renamed into place only when the digest is the one expected: nothing unverified is used.

Python's ``tarfile.tar_filter`` refuses names that escape the target (``..``, and paths that
resolve through an unpacked symlink to outside it), strips leading slashes and clears set-id
bits. A root filesystem legitimately holds absolute symlinks (``/bin/sh -> /bin/busybox``), so
the stricter ``data`` filter is wrong for it. We add what ``tar_filter`` misses: hard links must
resolve inside the layer, and device nodes are skipped (with a warning) when the unpacking user
could not create them anyway. Every refusal names the layer and the entry.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, cast

from .._util._errors import CarrierError
from .._util._fs import remove_tree
from .._util._logging import log
from .._util._root import Root
from ._compression import DECOMPRESS_ERRORS, open_decompressed
from ._extract import UnsafeArchiveError, tarfile

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "user.overlay.opaque"


class _Hashing:
    """A read-only stream that hashes and counts every byte read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class Layers:
    """Unpacked layers under one Carrier root."""

    def __init__(self, root: Root) -> None:
        self.dir = root.layers

    def _dir(self, diff_id: str) -> Path:
        algo, _, hexpart = diff_id.partition(":")
        if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
            raise CarrierError(f"invalid layer digest {diff_id!r}")
        return self.dir / hexpart

    def path(self, diff_id: str) -> Path:
        """The layer's tree (a lower directory for overlayfs)."""
        return self._dir(diff_id) / "diff"

    def has(self, diff_id: str) -> bool:
        """Whether the layer is unpacked and complete."""
        return (self._dir(diff_id) / "size").exists()

    def size(self, diff_id: str) -> int:
        """The size of the layer's uncompressed tar, in bytes (0 if unknown)."""
        try:
            return int((self._dir(diff_id) / "size").read_text())
        except (OSError, ValueError):
            return 0

    def all(self) -> list[str]:
        """The diff ids of every complete layer."""
        return sorted(f"sha256:{p.name}" for p in self.dir.iterdir()
                      if not p.name.startswith(".") and (p / "size").exists())

    def remove(self, diff_id: str) -> int:
        """Delete a layer; returns the bytes it recorded."""
        size = self.size(diff_id)
        d = self._dir(diff_id)
        staging = self.dir / f".remove.{d.name}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(d, staging)  # atomic: never a half-removed layer under its real name
            remove_tree(staging)
        return size

    def add(self, path: Path, *, label: str, expected: str | None = None) -> str:
        """Unpack the layer tar at *path* (plain, gzip, bzip2 or xz), safely, and return its
        diff id. With *expected*, a layer whose digest differs is refused and nothing stored."""
        if expected is not None and self.has(expected):
            return expected
        staging = Path(tempfile.mkdtemp(prefix=".unpack.", dir=self.dir))
        try:
            try:
                with path.open("rb") as f, open_decompressed(f, path.name) as raw:
                    stream = _Hashing(raw)
                    _unpack(cast(IO[bytes], stream), staging / "diff", label)
                    stream.drain()
            except DECOMPRESS_ERRORS as e:
                raise CarrierError(f"layer {label}: cannot read it: {e}") from None
            diff_id = "sha256:" + stream.sha.hexdigest()
            if expected is not None and diff_id != expected:
                raise CarrierError(f"layer {label}: digest mismatch: expected {expected}, got {diff_id}")
            (staging / "size").write_text(str(stream.size))
            os.chmod(staging, 0o700)
            self._place(staging, diff_id)
            return diff_id
        finally:
            remove_tree(staging)


    def _place(self, staging: Path, diff_id: str) -> None:
        """Rename a complete staging directory into place. Two processes adding the same layer
        may race: the loser finds the winner's complete layer and keeps it."""
        target = self._dir(diff_id)
        for _ in range(2):
            try:
                os.rename(staging, target)
                return
            except OSError as e:
                if self.has(diff_id):  # another process placed it first
                    return
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            # a directory without ``size`` is never complete: move it aside, never trusted
            aside = Path(tempfile.mkdtemp(prefix=f".remove.{target.name}.", dir=self.dir))
            with contextlib.suppress(FileNotFoundError):
                os.rename(target, aside / "layer")
            remove_tree(aside)
        raise CarrierError(f"cannot store layer {diff_id}: {target} keeps reappearing")


_PATH_MAX = os.pathconf("/", "PC_PATH_MAX")  # 4096 on Linux


def _unpack(stream: IO[bytes], dest: Path, label: str) -> None:
    """Extract the tar *stream* into the new directory *dest*, converting OCI whiteouts."""
    rootless = os.geteuid() != 0
    whiteouts: list[str] = []
    opaques: list[str] = []

    def member_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        for name in (member.name, member.linkname):
            if len(os.fsencode(os.path.join(path, name))) >= _PATH_MAX:
                shown = name if len(name) <= 60 else f"{name[:40]}...({len(name)} characters)"
                raise UnsafeArchiveError(f"layer {label}: refused entry {shown!r}: its path is "
                                         f"longer than the system allows ({_PATH_MAX} bytes)")
        head, _, base = member.name.rstrip("/").rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            _resolve(Path(path), head, label, member.name)
            (opaques if base == OPAQUE_MARKER else whiteouts).append(
                head if base == OPAQUE_MARKER else f"{head}/{base[len(WHITEOUT_PREFIX):]}".lstrip("/"))
            return None
        if member.ischr() and member.devmajor == 0 and member.devminor == 0:
            whiteouts.append(member.name)  # already in overlay form
            return None
        if rootless and (member.ischr() or member.isblk()):
            log.warning("layer.device_skipped", layer=label, entry=member.name,
                        why="a rootless user cannot create device nodes")
            return None
        if member.islnk():  # hard link names are relative to the archive's root
            if os.path.isabs(member.linkname):
                raise UnsafeArchiveError(f"layer {label}: refused entry {member.name!r}: "
                                         f"hard link to {member.linkname!r} outside the layer")
            target = _resolve(Path(path), member.linkname, label, member.name)
            if not target.is_file() or target.is_symlink():  # os.link would follow a symlink
                raise UnsafeArchiveError(f"layer {label}: refused entry {member.name!r}: hard link "
                                         f"to {member.linkname!r}, which is not a file of the layer")
        try:
            filtered = tarfile.tar_filter(member, path)
        except tarfile.FilterError as e:
            raise UnsafeArchiveError(f"layer {label}: refused entry {member.name!r}: {e}") from None
        _resolve(Path(path), filtered.name, label, member.name)
        # tar_filter also drops group/other write and sticky bits; only set-id bits go.
        if filtered.isreg():
            return filtered.replace(mode=member.mode & 0o1777 & ~0o6000, deep=False)
        return filtered.replace(mode=member.mode & 0o3777, deep=False) if filtered.isdir() else filtered

    dest.mkdir(mode=0o755)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(dest, filter=member_filter, numeric_owner=True)
    except UnsafeArchiveError:
        raise
    except tarfile.ReadError as e:
        raise CarrierError(f"layer {label}: not a tar archive ({e})") from None
    except (tarfile.TarError, EOFError) as e:
        raise CarrierError(f"layer {label}: cannot unpack: {e}") from None
    for rel in opaques:
        d = _resolve(dest, rel, label, f"{rel}/{OPAQUE_MARKER}")
        d.mkdir(parents=True, exist_ok=True)
        if not stat.S_ISDIR(os.lstat(d).st_mode):
            raise UnsafeArchiveError(f"layer {label}: opaque marker in {rel!r}, not a directory")
        os.setxattr(d, OPAQUE_XATTR, b"y", follow_symlinks=False)
    for rel in whiteouts:
        p = _resolve(dest, rel, label, rel)
        if p == dest:
            raise UnsafeArchiveError(f"layer {label}: refused whiteout of the layer's root")
        p.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(p):  # a whiteout beside the entry it deletes: the whiteout wins
            remove_tree(p) if stat.S_ISDIR(os.lstat(p).st_mode) else p.unlink()
        os.mknod(p, stat.S_IFCHR | 0o000, 0)


def _resolve(dest: Path, rel: str, label: str, entry: str) -> Path:
    """*dest*/*rel*, checked component by component with ``lstat``: no component may be a symlink,
    and none but the last a non-directory. A layer never legitimately writes through its own
    symlinks, and this does not depend on ``realpath`` (which gives up past PATH_MAX, where the
    kernel would go on following links: CVE-2025-4517)."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if rel.startswith("/") or ".." in parts:
        raise UnsafeArchiveError(f"layer {label}: refused entry {entry!r}: outside the layer")
    path = dest
    for i, part in enumerate(parts):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode) or (i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode)):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise UnsafeArchiveError(f"layer {label}: refused entry {entry!r}: "
                                     f"{'/'.join(parts[:i + 1])!r} is {kind}")
    return dest.joinpath(*parts)
