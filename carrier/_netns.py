"""Netlink sockets inside a holder's network namespace, for pyroute2.

The supervisor cannot ``setns`` into a user namespace itself (that needs a single-threaded
process), so a forked child joins the holder's user and network namespaces, opens a
``NETLINK_ROUTE`` socket there and hands it back over a socketpair. A netlink socket stays bound
to the namespace it was created in, so the parent then drives it with ``IPRoute(fileno=...)``.
"""

from __future__ import annotations

import ctypes
import os
import socket

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0
_libc = ctypes.CDLL(None, use_errno=True)


def netlink_socket(holder_pid: int, *, join_user: bool) -> socket.socket:
    """Return a ``NETLINK_ROUTE`` socket that lives in *holder_pid*'s network namespace."""
    ns_fds = []
    if join_user:
        ns_fds.append((os.open(f"/proc/{holder_pid}/ns/user", os.O_RDONLY), _CLONE_NEWUSER))
    ns_fds.append((os.open(f"/proc/{holder_pid}/ns/net", os.O_RDONLY), _CLONE_NEWNET))
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked child
            status = 1
            try:
                for fd, nstype in ns_fds:
                    if _libc.setns(fd, nstype) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                nl = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)
                socket.send_fds(child, [b"ok"], [nl.fileno()])
                status = 0
            finally:
                os._exit(status)
        child.close()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise OSError(f"cannot enter the network namespace of process {holder_pid}")
        _, fds, _, _ = socket.recv_fds(parent, 16, 1)
        return socket.socket(fileno=fds[0])
    finally:
        parent.close()
        child.close()
        for fd, _ in ns_fds:
            os.close(fd)


def loopback_up(holder_pid: int, *, join_user: bool) -> None:
    """Bring ``lo`` up inside the holder's network namespace (blocking; call from a thread)."""
    from pyroute2 import IPRoute

    nl = netlink_socket(holder_pid, join_user=join_user)
    with IPRoute(fileno=nl.detach()) as ipr:
        (idx,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=idx, state="up")
