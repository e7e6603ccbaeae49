"""Named volumes: ``<root>/volumes/<name>/_data``, shared by the containers that mount them and
outliving each of them.

A volume is created by renaming a complete staging directory into place, so it either exists
whole or not at all. ``volumes.lock`` is held shared by whoever records or starts a container
that uses volumes, and exclusively by removals, so that a volume in use is never removed. A new
volume carries ``needs-copy`` until its first mount, which seeds it from the image's content at
that path when it is still empty (as Docker and Podman do).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._images._layers import OPAQUE_XATTR
from .._state._records import now
from .._util._atomic import lock_fd, read_json, write_json
from .._util._errors import CarrierError, NotFoundError
from .._util._fs import remove_tree
from .._util._root import Root
from ._copy import top_entry

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # Docker's rule for volume names


def check_name(name: str) -> str:
    """*name* if Docker would accept it as a volume name; else one line saying why not."""
    if not NAME_RE.match(name) or len(name) > 255:
        raise CarrierError(f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+ "
                           "(at least two characters)")
    return name


class Volumes:
    """The named volumes under one Carrier root."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.dir = root.path / "volumes"

    @contextlib.contextmanager
    def lock(self, *, shared: bool) -> Iterator[None]:
        """Shared: containers using volumes are being recorded or started. Exclusive: removal."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        fd = lock_fd(self.root.path / "volumes.lock", shared=shared)
        try:
            yield
        finally:
            os.close(fd)

    def data(self, name: str) -> Path:
        """The directory containers see: ``<root>/volumes/<name>/_data``."""
        return self.dir / check_name(name) / "_data"

    def exists(self, name: str) -> bool:
        """Whether volume *name* exists."""
        return self.data(name).is_dir()

    def create(self, name: str, labels: dict[str, str] | None = None) -> bool:
        """Create volume *name* unless it exists; True if this call created it."""
        check_name(name)
        self.dir.mkdir(mode=0o700, exist_ok=True)
        if self.exists(name):
            return False
        staging = self.dir / f".{name}.{secrets.token_hex(4)}"
        try:
            staging.mkdir(mode=0o700)
            (staging / "_data").mkdir(mode=0o755)
            (staging / "needs-copy").touch()
            write_json(staging / "volume.json",
                       {"Name": name, "CreatedAt": now(), "Labels": labels or {}})
            try:
                os.rename(staging, self.dir / name)
            except OSError:  # created by someone else meanwhile
                if self.exists(name):
                    return False
                raise
        finally:
            remove_tree(staging)
        return True

    def names(self) -> list[str]:
        """Every volume's name, sorted."""
        try:
            return sorted(d.name for d in self.dir.iterdir()
                          if not d.name.startswith(".") and (d / "_data").is_dir())
        except FileNotFoundError:
            return []

    def inspect(self, name: str) -> dict[str, Any]:
        """What ``volume inspect`` shows, in Podman's fields."""
        if not self.exists(name):
            raise NotFoundError(f"no such volume: {name}")
        try:
            meta = read_json(self.dir / name / "volume.json")
        except (OSError, ValueError):
            meta = {}
        return {"Name": name, "Driver": "local", "Mountpoint": str(self.data(name)),
                "CreatedAt": meta.get("CreatedAt"), "Labels": meta.get("Labels") or {},
                "Scope": "local", "Options": {}}

    def remove(self, name: str) -> None:
        """Delete volume *name* and its data (the caller holds :meth:`lock` exclusively and has
        checked that no container uses it, ``_mounts.volume_users``). What containers wrote as
        other ids is removed as its owner."""
        if not self.exists(name):
            raise NotFoundError(f"no such volume: {name}")
        gone = self.dir / f".{name}.removing.{secrets.token_hex(4)}"
        os.rename(self.dir / name, gone)  # the name is free at once; no half volume stays visible
        try:
            remove_tree(gone)
        except PermissionError:  # what containers wrote as their other (subordinate) ids
            from .._sandbox._idmap import remove_as_owner

            remove_as_owner(gone)

    def seed(self, name: str, layers: tuple[Path, ...], destination: str) -> None:
        """On the first mount of volume *name*: if it is empty, copy the image's content at
        *destination* into it, then never again."""
        vdir = self.dir / name
        fd = os.open(vdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # two first mounts at once: one copies
            marker = vdir / "needs-copy"
            if not marker.exists():
                return
            data = vdir / "_data"
            source = top_entry(layers, destination.strip("/")) if destination != "/" else None
            if (source is not None and stat.S_ISDIR(os.lstat(source).st_mode)
                    and not any(data.iterdir())):
                os.chmod(data, stat.S_IMODE(os.lstat(source).st_mode))
                _copy_merged(layers, destination.strip("/"), data)
            marker.unlink()
        finally:
            os.close(fd)


def _copy_merged(layers: tuple[Path, ...], rel: str, dest: Path) -> None:
    """Copy directory *rel* as the merged layers show it into the existing directory *dest*:
    whiteouts and opaque directories respected, symlinks copied as symlinks."""
    for entry in _merged_names(layers, rel):
        sub = f"{rel}/{entry}"
        source = top_entry(layers, sub)
        if source is None:
            continue
        st = os.lstat(source)
        target = dest / entry
        if stat.S_ISDIR(st.st_mode):
            target.mkdir(mode=0o700)
            _copy_merged(layers, sub, target)
            os.chmod(target, stat.S_IMODE(st.st_mode))
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISREG(st.st_mode):
            shutil.copyfile(source, target, follow_symlinks=False)
            os.chmod(target, stat.S_IMODE(st.st_mode))
        else:
            continue  # devices and fifos: an unprivileged user cannot make them
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _merged_names(layers: tuple[Path, ...], rel: str) -> list[str]:
    """The names in directory *rel* of any layer down to the first that hides the rest."""
    names: set[str] = set()
    for layer in reversed(layers):
        path = layer / rel
        if not os.path.lexists(path):
            continue
        if path.is_symlink() or not path.is_dir():  # a whiteout or file hides what is below
            break
        names.update(os.listdir(path))
        try:
            if os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                break
        except OSError:
            pass
    return sorted(names)
