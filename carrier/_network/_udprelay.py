"""Carrier's own relay for published UDP ports.

Measured on Debian 12: pasta (2023-03-09) never returns UDP replies to a client on the host's
loopback, and slirp4netns drops them when host loopback is disabled (its replies go to
10.0.2.2). So, as Podman does with its own port handler, Carrier relays UDP itself: it binds
the host port, and for each client opens a UDP socket inside the container's namespace
(created there, so it stays there) connected to the container's port.

Datagrams go to the container's own address first, as Docker's do. When nothing listens there
(the kernel answers with a port-unreachable, which a connected UDP socket reports as
ECONNREFUSED), the client's datagrams go to 127.0.0.1 instead, its last one sent again, and the
other way round: a server bound to the interface address, to the wildcard or to loopback is
reached, and each datagram is sent at most once per address. Each client has one socket per
address, so that the server sees a source address of the same kind as its own.
"""

from __future__ import annotations

import collections
import contextlib
import socket
from dataclasses import dataclass
from typing import Any

import anyio

from .._sandbox._enter import sockets_in
from ._ports import PortMapping, host_socket

_MAX_PEERS = 256


@dataclass
class _Peer:
    """One host client: its sockets inside (one per address), the one in use, its last datagram."""

    inner: list[socket.socket]
    scope: anyio.CancelScope
    target: int = 0  # index into inner (and the relay's addresses)
    last: bytes = b""
    tries: int = 0  # addresses tried for ``last``


class UdpRelay:
    """Relays one published UDP port into the container's namespace."""

    def __init__(self, mapping: PortMapping) -> None:
        self.mapping = mapping
        self.host = host_socket(mapping)
        self.host.setblocking(False)
        port = self.host.getsockname()[1]  # the chosen one, for host port 0
        self.mapping = PortMapping(mapping.host_ip, port, mapping.container_port, "udp")
        self.addresses: list[str] = ["127.0.0.1"]
        # Most recently heard last; beyond _MAX_PEERS the least recent client is forgotten.
        self.peers: collections.OrderedDict[tuple[Any, ...], _Peer] = collections.OrderedDict()

    async def run(self, holder_pid: int, join_user: bool, address: str | None = None) -> None:
        """Relay until cancelled, to the container's *address* and then to its 127.0.0.1.

        **Cancellation:** every socket is closed."""
        if address is not None and address != "127.0.0.1":
            self.addresses = [address, "127.0.0.1"]
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    await anyio.wait_readable(self.host)
                    try:
                        data, client = self.host.recvfrom(65535)
                    except BlockingIOError:
                        continue
                    peer = self.peers.get(client)
                    if peer is not None:
                        self.peers.move_to_end(client)
                    else:
                        if len(self.peers) >= _MAX_PEERS:
                            self.peers.popitem(last=False)[1].scope.cancel()  # its task closes it
                        inner = await self._open_inner(holder_pid, join_user)
                        peer = self.peers[client] = _Peer(inner, anyio.CancelScope())
                        tg.start_soon(self._replies, peer, client)
                    peer.last, peer.tries = data, 0
                    self._send(peer)
        finally:
            self.close()

    async def _open_inner(self, holder_pid: int, join_user: bool) -> list[socket.socket]:
        kind = (socket.AF_INET, socket.SOCK_DGRAM, 0)
        inner = await anyio.to_thread.run_sync(
            lambda: sockets_in(holder_pid, [kind] * len(self.addresses), join_user=join_user)
        )
        for sock, address in zip(inner, self.addresses, strict=True):
            sock.connect((address, self.mapping.container_port))
            sock.setblocking(False)
        return inner

    def _send(self, peer: _Peer) -> None:
        """Send the client's last datagram. A refusal raised here is the one an earlier datagram
        met at the current address: try the next (once per address)."""
        while True:
            try:
                peer.inner[peer.target].send(peer.last)
                return
            except ConnectionRefusedError:
                if not self._next_address(peer):
                    return
            except OSError:  # no route, buffer full: dropped, as UDP may
                return

    def _next_address(self, peer: _Peer) -> bool:
        """Use *peer*'s next address, unless its last datagram has been to all of them."""
        if peer.tries + 1 >= len(self.addresses):
            return False
        peer.tries += 1
        peer.target = (peer.target + 1) % len(self.addresses)
        return True

    async def _replies(self, peer: _Peer, client: tuple[Any, ...]) -> None:
        """Pass on what comes back on any of *peer*'s sockets until its scope is cancelled."""
        try:
            with peer.scope:
                async with anyio.create_task_group() as tg:
                    for index in range(len(peer.inner)):
                        tg.start_soon(self._replies_on, peer, index, client)
        finally:
            for sock in peer.inner:
                sock.close()

    async def _replies_on(self, peer: _Peer, index: int, client: tuple[Any, ...]) -> None:
        sock = peer.inner[index]
        while True:
            await anyio.wait_readable(sock)
            try:
                reply = sock.recv(65535)
            except ConnectionRefusedError:  # nothing listens at that address
                if index == peer.target and self._next_address(peer):
                    self._send(peer)
                continue
            except OSError:
                continue
            with contextlib.suppress(OSError):
                self.host.sendto(reply, client)

    def close(self) -> None:
        """Close the host socket and every inner one."""
        for peer in self.peers.values():
            for sock in peer.inner:
                sock.close()
        self.host.close()
        self.peers.clear()
