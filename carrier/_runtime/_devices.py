"""The host devices a ``--privileged`` container gets: every device node under /dev (and
/dev/net) that this user may open for reading and writing, bound in, as rootless Podman does.
A user namespace cannot create device nodes, and binding one the user cannot open would give
nothing, so the set depends on the host's permissions (e.g. /dev/net/tun, /dev/fuse, /dev/kvm).
"""

from __future__ import annotations

import os
import stat
from typing import Any

# The runtime makes these itself; /dev/pts and /dev/shm are their own mounts.
_OWN = {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "console"}


def host_devices(base: str = "/dev") -> list[dict[str, Any]]:
    """OCI bind mounts of the host's device nodes under *base* and *base*/net that this user
    can read and write, sorted by path."""
    found: list[dict[str, Any]] = []
    for directory in (base, os.path.join(base, "net")):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if directory == base and entry.name in _OWN:
                continue
            if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
                continue
            if not os.access(entry.path, os.R_OK | os.W_OK):
                continue
            found.append({"destination": entry.path.replace(base, "/dev", 1), "type": "bind",
                          "source": entry.path, "options": ["bind", "nosuid", "noexec"]})
    return found
