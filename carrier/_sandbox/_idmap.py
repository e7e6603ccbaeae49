"""Id maps: root in a container's user namespace is the invoking user, and ids 1.. are its
subordinate ranges (/etc/subuid, /etc/subgid), written by newuidmap/newgidmap.

Also removal of what a container left owned by those subordinate ids, which the user can only
delete from inside such a namespace (as ``podman unshare rm`` does).
"""

from __future__ import annotations

import getpass
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .._util._errors import CarrierError


@dataclass(frozen=True)
class IdRange:
    """One line of a uid or gid map: container id, host id, count."""

    container: int
    host: int
    size: int


def subordinate_range(path: Path, user: str, uid: int) -> tuple[int, int] | None:
    """The first ``start, count`` entry for *user* (or its numeric id) in /etc/subuid-style *path*."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)):
            return int(parts[1]), int(parts[2])
    return None


def id_maps(uid: int, gid: int) -> tuple[list[IdRange], list[IdRange]]:
    """Root inside maps to the invoking user; ids 1.. map to its subordinate ranges, if any.

    For root itself the map is the identity, so files keep their owners, but the container's
    root holds its capabilities only inside its own namespaces.
    """
    if uid == 0:
        return [IdRange(0, 0, 4294967295)], [IdRange(0, 0, 4294967295)]
    user = _user_name(uid)
    maps = []
    for own, path in ((uid, Path("/etc/subuid")), (gid, Path("/etc/subgid"))):
        ranges = [IdRange(0, own, 1)]
        sub = subordinate_range(path, user, uid)
        if sub is not None:
            ranges.append(IdRange(1, sub[0], sub[1]))
        maps.append(ranges)
    return maps[0], maps[1]


def _user_name(uid: int) -> str:
    try:
        return getpass.getuser() if os.getuid() == uid else str(uid)
    except OSError:
        return str(uid)


def remove_as_owner(path: Path) -> None:
    """``rm -rf`` *path* inside a user namespace with the containers' id maps, where this user
    is root over every id its containers could have used."""
    uid_map, gid_map = id_maps(os.getuid(), os.getgid())
    if os.getuid() == 0 or len(uid_map) < 2 or len(gid_map) < 2:
        raise CarrierError(f"cannot remove {path}: files owned by other users")
    with subprocess.Popen(
        ["unshare", "--user", "--", "sh", "-c", 'echo ready && read _ && exec rm -rf -- "$0"', str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C must not cut a removal short
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        if proc.stdout.readline() != b"ready\n":
            proc.kill()
            raise CarrierError(f"cannot remove {path}: {proc.stderr.read().decode().strip()}")
        for tool, ranges in (("newuidmap", uid_map), ("newgidmap", gid_map)):
            args = [str(n) for r in ranges for n in (r.container, r.host, r.size)]
            mapped = subprocess.run([tool, str(proc.pid), *args], capture_output=True, text=True)
            if mapped.returncode != 0:
                proc.kill()
                raise CarrierError(f"cannot remove {path}: {tool}: {mapped.stderr.strip()}")
        try:
            _, err = proc.communicate(b"go\n", timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise CarrierError(f"cannot remove {path}: rm took longer than 5 minutes") from None
        if proc.returncode != 0:
            raise CarrierError(f"cannot remove {path}: {err.decode().strip()}")
