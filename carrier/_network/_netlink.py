"""Netlink inside a holder's network namespace, through pyroute2.

``NETLINK_ROUTE`` sockets are made inside the holder's network namespace (``_sandbox._enter``);
a netlink socket stays bound to the namespace it was created in, so this process drives it with
``IPRoute(fileno=...)``.

Every function here blocks: call it from a worker thread (pyroute2 runs its own event loop).
"""

from __future__ import annotations

import contextlib
import fcntl
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from .._sandbox._enter import sockets_in

_NETLINK_ROUTE = 0
_RTMGRP_LINK, _RTMGRP_IPV4_IFADDR, _RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
_IFF_UP = 0x1
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914


class NetworkNotReady(Exception):
    """The namespace did not get an interface, address and default route in time."""


def netlink_sockets(holder_pid: int, *, join_user: bool, count: int = 1) -> list[socket.socket]:
    """Return *count* ``NETLINK_ROUTE`` sockets living in *holder_pid*'s network namespace."""
    kind = (socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)
    return sockets_in(holder_pid, [kind] * count, join_user=join_user)


def iproute(sock: socket.socket) -> Any:
    from pyroute2 import IPRoute

    return IPRoute(fileno=sock.detach())


def loopback_up(holder_pid: int, *, join_user: bool) -> None:
    """Bring ``lo`` up inside the holder's network namespace.

    One flag on one interface: the classic ``SIOCSIFFLAGS`` ioctl on a socket made inside the
    namespace does it without loading pyroute2 (about 110 ms) on the ``--no-network`` path.
    """
    (sock,) = sockets_in(holder_pid, [_INET], join_user=join_user)
    _set_loopback_up(sock)


_INET = (socket.AF_INET, socket.SOCK_DGRAM, 0)


def _set_loopback_up(sock: socket.socket) -> None:
    """Set ``lo`` up through *sock*, an ``AF_INET`` socket of the namespace; close it."""
    with sock:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def preload() -> None:
    """Import pyroute2 (slow) ahead of need, e.g. in a thread while other set-up runs. A
    failure here (no descriptors left, say) is left to the real import, which reports it."""
    with contextlib.suppress(Exception):  # a head start only: the real import reports
        import pyroute2  # noqa: F401


@dataclass(frozen=True)
class NetState:
    """What the helper configured: the interface, its IPv4 address, the gateway, the MTU."""

    ifname: str
    address: str
    prefixlen: int
    gateway: str
    mtu: int


def read_state(ipr: Any) -> NetState | None:
    """The configured uplink, or None while it lacks link-up, an address or a default route."""
    routes = [r for r in ipr.get_default_routes(family=socket.AF_INET) if r.get("gateway")]
    if not routes:
        return None
    oif = routes[0].get("oif")
    links = [link for link in ipr.get_links() if link["index"] == oif]
    if not links or not links[0]["flags"] & _IFF_UP:
        return None
    addrs = ipr.get_addr(family=socket.AF_INET, index=oif)
    if not addrs:
        return None
    return NetState(
        ifname=links[0].get("ifname"),
        address=addrs[0].get("address"),
        prefixlen=addrs[0]["prefixlen"],
        gateway=routes[0].get("gateway"),
        mtu=links[0].get("mtu"),
    )


def wait_configured(holder_pid: int, *, join_user: bool, helper_pidfd: int,
                    timeout: float) -> NetState:
    """Set ``lo`` up, then wait until the helper has configured the namespace, woken by netlink
    events. ``lo`` is done here, while the helper starts, with the same entry into the
    namespace as the netlink sockets: one fork fewer before the helper can start.

    Raises :class:`NetworkNotReady` after *timeout* seconds, ``ChildProcessError`` if the
    helper exits first.
    """
    netlink = (socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)
    inet, events, query = sockets_in(holder_pid, [_INET, netlink, netlink], join_user=join_user)
    with contextlib.ExitStack() as owned:
        owned.enter_context(events)
        owned.enter_context(query)
        _set_loopback_up(inet)
        events.bind((0, _RTMGRP_LINK | _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV4_ROUTE))
        events.setblocking(False)
        ipr = owned.enter_context(iproute(query))
        return _wait_state(ipr, events, helper_pidfd, timeout)


def _poll(fds: list[int], timeout: float) -> list[int]:
    """Those of *fds* readable within *timeout* seconds (``poll``, not ``select``: a keeper
    running many containers holds descriptors above 1024, which ``select`` refuses)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return [fd for fd, _ in poller.poll(max(timeout, 0) * 1000)]


def _wait_state(ipr: Any, events: socket.socket, helper_pidfd: int, timeout: float) -> NetState:
    """Read the state through *ipr* until it is configured, woken by *events*."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(ipr)
        if state is not None:
            return state
        remaining = deadline - time.monotonic()
        ready = _poll([events.fileno(), helper_pidfd], remaining)
        if helper_pidfd in ready:
            raise ChildProcessError("the network helper exited during set-up")
        if not ready:
            raise NetworkNotReady(f"network not configured within {timeout:g} s")
        while True:  # drain the notifications; the next read_state sees their effect
            try:
                events.recv(65536)
            except BlockingIOError:
                break
