"""The network check on entering a container (``exec``, ``shell``, ``terminal``).

The helper is alive, but a process inside may have lost the configuration: taken the
interface down, deleted the default route, removed /etc/resolv.conf. Carrier restores what the
helper had set up (recorded in the container's record at start) with pyroute2 inside the
namespace, rewrites the files from the copies kept at start, and says what it repaired. A dead
helper is not this module's business: the supervision tree already ends the group.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import Any

from . import _netns, _process
from ._state import Record
from ._storage import running_view

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
    (nl,) = _netns.netlink_sockets(record.holder_pid, join_user=True)
    with _netns._ipr(nl) as ipr:
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
    for name in FILES:
        kept = cdir / name
        target = etc / name
        # Only a missing or emptied file is restored: an edit made inside is the user's.
        if kept.exists() and not etc.is_symlink() and (
            not target.exists() or target.stat().st_size == 0
        ):
            target.unlink(missing_ok=True)
            shutil.copyfile(kept, target)
            repaired.append(f"/etc/{name}")
    return repaired
