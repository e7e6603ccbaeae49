"""The network check on entering a container (``exec``, ``shell``, ``terminal``).

The helper is alive, but a process inside may have lost the configuration: taken the
interface down, deleted the default route, removed /etc/resolv.conf. Carrier restores what the
helper had set up (recorded in the container's record at start) with pyroute2 inside the
namespace, rewrites the files from the copies kept at start, and says what it repaired. A dead
helper is not this module's business: the supervision tree already ends the group.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from .._state._records import Record
from .._storage._rootfs import running_view
from .._util import _process
from . import _netlink

FILES = ("resolv.conf", "hosts")


def helper_alive(cdir: Path) -> bool:
    """Whether the helper named in ``network.pid`` still runs."""
    recorded = _process.read_pid_file(cdir / "network.pid")
    return recorded is not None and _process.same_process(*recorded)


def check_and_repair(record: Record, cdir: Path) -> list[str]:
    """Restore a running container's network configuration; return what was repaired.

    Blocking (pyroute2): call it from a worker thread.
    """
    net: dict[str, Any] = record.network or {}
    if net.get("mode") not in ("pasta", "slirp4netns") or record.holder_pid is None:
        return []  # --no-network and --elevated containers are left as they are
    if not _process.same_process(record.holder_pid, record.holder_start) or not helper_alive(cdir):
        return []
    repaired: list[str] = []
    (nl,) = _netlink.netlink_sockets(record.holder_pid, join_user=True)
    with _netlink.iproute(nl) as ipr:
        (index,) = ipr.link_lookup(ifname=net["interface"])
        link = ipr.get_links(index)[0]
        if not link["flags"] & 0x1:
            ipr.link("set", index=index, state="up")
            repaired.append(f"{net['interface']} up")
        address, prefixlen = net["address"].split("/")
        if not any(a.get("address") == address
                   for a in ipr.get_addr(family=socket.AF_INET, index=index)):
            ipr.addr("add", index=index, address=address, prefixlen=int(prefixlen))
            repaired.append(f"address {net['address']}")
        if not ipr.get_default_routes(family=socket.AF_INET):
            ipr.route("add", dst="0.0.0.0/0", gateway=net["gateway"], oif=index)
            repaired.append(f"default route via {net['gateway']}")
    etc = running_view(cdir, record.spec.storage_driver, record.container_pid) / "etc"
    repaired += [f"/etc/{name}" for name in _restore_files(etc, cdir)]
    return repaired


def _restore_files(etc: Path, kept: Path) -> list[str]:
    """Put back a missing or emptied resolv.conf or hosts (an edit made inside is the user's).

    The running container could swap its /etc for a symlink to a host directory at any moment,
    so everything happens relative to one descriptor of the real directory, opened without
    following a symlink: no later swap can redirect the write.
    """
    try:
        fd = os.open(etc, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # no /etc, or a symlink: not ours to touch
        return []
    restored = []
    try:
        for name in FILES:
            if not (kept / name).exists():
                continue
            try:
                if os.stat(name, dir_fd=fd, follow_symlinks=False).st_size > 0:
                    continue
            except FileNotFoundError:
                pass
            tmp = f".{name}.carrier"
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=fd)
            with os.fdopen(out, "wb") as f:
                f.write((kept / name).read_bytes())
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            restored.append(name)
    finally:
        os.close(fd)
    return restored
