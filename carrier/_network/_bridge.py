"""A named network's bridge and the veth pairs that attach containers to it, through pyroute2.

The network holder owns a user and a network namespace; the bridge lives in that network
namespace with the gateway address. A container's holder is created *inside the network's user
namespace*, so a netlink socket made in the network's namespaces (``_netlink.netlink_sockets``)
may move a veth end into the container's network namespace: both namespaces belong to the same
user namespace, where that socket's creator has CAP_NET_ADMIN.

Every function here blocks: call it from a worker thread (pyroute2 runs its own event loop).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from . import _netlink

BRIDGE = "carrier0"
MTU = 65520  # the helpers' MTU: the bridge is never the narrow part of a path


def _ipr(holder_pid: int) -> Any:
    (sock,) = _netlink.netlink_sockets(holder_pid, join_user=True)
    return _netlink.iproute(sock)


def make_bridge(holder_pid: int, gateway: str, prefixlen: int) -> None:
    """Create the bridge inside the network holder's namespace with the gateway address, up."""
    with _ipr(holder_pid) as ipr:
        ipr.link("add", ifname=BRIDGE, kind="bridge")
        index = ipr.link_lookup(ifname=BRIDGE)[0]
        ipr.link("set", index=index, mtu=MTU)
        ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")


def veth_name(cid: str) -> str:
    """The bridge-side end of a container's veth pair (15 characters at most)."""
    return f"vc{cid[:12]}"


def mac_for(address: str) -> str:
    """The MAC address of the member that has IPv4 *address* (02:42 and its four bytes, as
    Docker derives it): a member that comes back with its address keeps its MAC, so that the
    other members' neighbour caches stay right (else they send to the old MAC for ~30 s)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def attach(net_holder: int, container_holder: int, cid: str, address: str, prefixlen: int,
           gateway: str, mtu: int | None, *, ifname: str = "eth0",
           default_route: bool = True) -> None:
    """Give the container's namespace an interface *ifname* on the bridge: a veth pair made in
    the network's namespace, its peer created directly in the container's namespace with
    *address*, up, and (with *default_route*) the default route via *gateway*."""
    mtu = mtu or MTU
    host_end = veth_name(cid)
    netns_fd = os.open(f"/proc/{container_holder}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _ipr(net_holder) as ipr:
            for index in ipr.link_lookup(ifname=host_end):  # left by a run killed mid-way
                ipr.link("del", index=index)
            ipr.link("add", ifname=host_end, kind="veth", mtu=mtu,
                     peer={"ifname": ifname, "net_ns_fd": netns_fd, "mtu": mtu,
                           "address": mac_for(address)})
            index = ipr.link_lookup(ifname=host_end)[0]
            bridge = ipr.link_lookup(ifname=BRIDGE)[0]
            ipr.link("set", index=index, master=bridge)
            ipr.link("set", index=index, state="up")
    finally:
        os.close(netns_fd)
    (sock,) = _netlink.netlink_sockets(container_holder, join_user=True)
    with _netlink.iproute(sock) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        if default_route:
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index, family=socket.AF_INET)


def next_interface(container_holder: int) -> str:
    """The first free ``ethN`` (N from 1) in the container's namespace: the name a network
    connected to a running container gives its interface (eth0 is its first network's)."""
    (sock,) = _netlink.netlink_sockets(container_holder, join_user=True)
    with _netlink.iproute(sock) as ipr:
        taken = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    return next(f"eth{n}" for n in range(1, len(taken) + 2) if f"eth{n}" not in taken)


def detach(net_holder: int, cid: str) -> None:
    """Remove the container's veth pair (both ends go); nothing if it is already gone."""
    with _ipr(net_holder) as ipr:
        for index in ipr.link_lookup(ifname=veth_name(cid)):
            ipr.link("del", index=index)
