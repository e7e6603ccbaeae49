"""A container's extra mounts: ``-v``, ``--mount``, ``--tmpfs`` and ``--read-only``, parsed and
checked the way Docker reads them, and turned into OCI ``mounts`` entries for ``config.json``.

Binds are rootless ``rbind`` mounts of paths the user named; nothing is created outside them
and the volume store. A read-only bind keeps the source's locked flags (nosuid, nodev, noexec),
which a user namespace may not clear on remount.
"""

from __future__ import annotations

import contextlib
import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._state._records import Containers, Spec
from .._util._errors import CarrierError, ConflictError
from .._util._root import Root
from ._volumes import NAME_RE, Volumes

Kind = Literal["bind", "volume", "tmpfs"]
_TMPFS_DEFAULTS = ("nosuid", "nodev", "noexec")  # Podman's and Docker's for --tmpfs
_TMPFS_FLAGS = {"ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime",
                "strictatime", "relatime", "nodiratime"}
_TMPFS_KEYS = {"size", "mode", "nr_inodes", "nr_blocks", "uid", "gid"}
_READ_ONLY_TMPFS = ("/run", "/tmp", "/var/tmp")  # Podman's --read-only-tmpfs (it also has /dev)


@dataclass(frozen=True)
class Mount:
    """One extra mount: a bind of a host path, a named volume, or a tmpfs."""

    kind: Kind
    source: str  # the host path, the volume name, or "" for a tmpfs
    destination: str
    read_only: bool = False
    options: tuple[str, ...] = ()  # a tmpfs's own options (size=64m, mode=1777, ...)


def parse_mounts(spec: Spec, *, check_sources: bool = True) -> list[Mount]:
    """Every extra mount of *spec*, checked: absolute destinations, each used once, valid
    volume names and tmpfs options, and (with *check_sources*) bind sources that exist."""
    mounts = [_volume_option(v) for v in spec.volumes]
    mounts += [_mount_option(m) for m in spec.mounts]
    mounts += [_tmpfs_option(t) for t in spec.tmpfs]
    seen: set[str] = set()
    for m in mounts:
        if m.destination in seen:
            raise CarrierError(f"duplicate mount destination {m.destination}")
        seen.add(m.destination)
        if check_sources and m.kind == "bind" and not os.path.exists(m.source):
            raise CarrierError(f"bind source path does not exist: {m.source}")
    if spec.read_only and spec.read_only_tmpfs:
        mounts += [Mount("tmpfs", "", d, options=("nosuid", "nodev")) for d in _READ_ONLY_TMPFS
                   if d not in seen]
    return mounts


def _destination(path: str, option: str) -> str:
    if not path.startswith("/"):
        raise CarrierError(f"invalid {option} destination {path!r}: it must be an absolute path")
    return os.path.normpath(path).replace("//", "/")


def _source(text: str, option: str) -> tuple[Kind, str]:
    """A bind's absolute host path or a volume's name; a relative path is refused."""
    if text.startswith("/"):
        return "bind", os.path.normpath(text).replace("//", "/")
    if NAME_RE.match(text):
        return "volume", text
    raise CarrierError(f"invalid {option} source {text!r}: a bind source must be an absolute "
                       "path and a volume name [a-zA-Z0-9][a-zA-Z0-9_.-]+")


def _volume_option(text: str) -> Mount:
    """``-v HOST|NAME:CONTAINER[:ro|rw]``."""
    parts = text.split(":")
    if len(parts) == 1 and parts[0]:
        raise CarrierError(f"invalid -v {text!r}: anonymous volumes are not supported; "
                           "name one (NAME:/path) or bind a path (/host:/path)")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise CarrierError(f"invalid -v {text!r}: expected HOST:CONTAINER[:ro|rw]")
    flags = parts[2].split(",") if len(parts) == 3 else []
    if any(f not in ("ro", "rw") for f in flags) or len(flags) > 1:
        raise CarrierError(f"invalid -v option {parts[2]!r} in {text!r}: use ro or rw")
    kind, source = _source(parts[0], "-v")
    return Mount(kind, source, _destination(parts[1], "-v"), read_only=flags == ["ro"])


def _tmpfs_option(text: str) -> Mount:
    """``--tmpfs /path[:opts]``."""
    path, _, opts = text.partition(":")
    options = tuple(o for o in opts.split(",") if o) if opts else ()
    return Mount("tmpfs", "", _destination(path, "--tmpfs"),
                 options=(*_TMPFS_DEFAULTS, *_check_tmpfs(options, text)))


def _check_tmpfs(options: tuple[str, ...], text: str) -> tuple[str, ...]:
    for o in options:
        key, sep, value = o.partition("=")
        if (sep and (key not in _TMPFS_KEYS or not value)) or (not sep and o not in _TMPFS_FLAGS):
            raise CarrierError(f"invalid tmpfs option {o!r} in {text!r}")
    return options


def _mount_option(text: str) -> Mount:
    """``--mount type=bind|volume|tmpfs,src=..,dst=..[,ro]``, Docker's CSV form."""
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        raise CarrierError(f"invalid --mount {text!r}: expected KEY=VALUE,...") from None
    kind, source, dest, read_only, tmpfs_opts = "volume", "", "", False, []
    for item in fields:
        key, _, value = item.partition("=")
        key = key.strip().lower()
        if key == "type" and value in ("bind", "volume", "tmpfs"):
            kind = value
        elif key in ("source", "src") and value:
            source = value
        elif key in ("destination", "dst", "target") and value:
            dest = value
        elif key in ("ro", "readonly") and value.lower() in ("", "true", "1", "false", "0"):
            read_only = value.lower() in ("", "true", "1")
        elif key == "tmpfs-size" and value:
            tmpfs_opts.append(f"size={value}")
        elif key == "tmpfs-mode" and value:
            tmpfs_opts.append(f"mode={value}")
        else:
            raise CarrierError(f"invalid --mount field {item!r} in {text!r}")
    if not dest:
        raise CarrierError(f"invalid --mount {text!r}: dst= is required")
    if kind == "tmpfs":
        if source:
            raise CarrierError(f"invalid --mount {text!r}: a tmpfs has no source")
        opts = (*_TMPFS_DEFAULTS, *_check_tmpfs(tuple(tmpfs_opts), text), *(("ro",) if read_only else ()))
        return Mount("tmpfs", "", _destination(dest, "--mount"), options=opts)
    if tmpfs_opts:
        raise CarrierError(f"invalid --mount {text!r}: tmpfs options need type=tmpfs")
    if not source:
        raise CarrierError(f"invalid --mount {text!r}: src= is required for type={kind}")
    found, source = _source(source, "--mount")
    if found != kind:
        raise CarrierError(f"invalid --mount {text!r}: type={kind} needs "
                           + ("an absolute host path" if kind == "bind" else "a volume name"))
    return Mount(kind, source, _destination(dest, "--mount"), read_only=read_only)


def volume_users(root: Root, name: str) -> list[str]:
    """The names of the containers whose spec mounts volume *name* (in any state)."""
    found = []
    for record in Containers(root).all():
        with contextlib.suppress(CarrierError):
            if any(m.kind == "volume" and m.source == name
                   for m in parse_mounts(record.spec, check_sources=False)):
                found.append(record.name)
    return found


def remove_unused(root: Root, name: str) -> None:
    """Remove volume *name*, refused while a container uses it (as Podman refuses); the caller
    holds the volumes' lock exclusively."""
    users = volume_users(root, name)
    if users:
        raise ConflictError(f"volume {name} is being used by the following container(s): "
                            f"{', '.join(users)} (remove them first or use -f)")
    Volumes(root).remove(name)


def prepare(root: Root, spec: Spec, layers: tuple[Path, ...]) -> list[dict[str, Any]]:
    """The OCI ``mounts`` entries of *spec*'s extra mounts, for a start: named volumes created
    if missing and seeded on their first mount, bind sources checked again (they may have gone)."""
    mounts = parse_mounts(spec)
    volumes = Volumes(root)
    entries = []
    for m in mounts:
        if m.kind == "tmpfs":
            entries.append({"destination": m.destination, "type": "tmpfs", "source": "tmpfs",
                            "options": list(m.options)})
            continue
        if m.kind == "volume":
            with volumes.lock(shared=True):
                volumes.create(m.source)
                volumes.seed(m.source, layers, m.destination)
            source = str(volumes.data(m.source))
        else:
            source = m.source
        options = ["rbind", "rprivate", "ro" if m.read_only else "rw"]
        if m.read_only:
            options += _locked_flags(source)
        entries.append({"destination": m.destination, "type": "bind", "source": source,
                        "options": options})
    return entries


def _locked_flags(path: str) -> list[str]:
    """The flags of *path*'s mount that a user namespace may not clear on a read-only remount."""
    flags = os.statvfs(path).f_flag
    return [name for bit, name in ((os.ST_NOSUID, "nosuid"), (os.ST_NODEV, "nodev"),
                                   (os.ST_NOEXEC, "noexec")) if flags & bit]
