"""Carrier's own relay for published UDP ports.

Measured on Debian 12: pasta (2023-03-09) never returns UDP replies to a client on the host's
loopback, and slirp4netns drops them when host loopback is disabled (its replies go to
10.0.2.2). So, as Podman does with its own port handler, Carrier relays UDP itself: it binds
the host port, and for each client opens a UDP socket inside the container's namespace
(created there, so it stays there) connected to the container's port. TCP ports stay with the
helper, which keeps Carrier out of their data path.
"""

from __future__ import annotations

import collections
import contextlib
import socket
from typing import Any

import anyio

from .._sandbox._enter import sockets_in
from ._ports import PortInUseError, PortMapping

_MAX_PEERS = 256


class UdpRelay:
    """Relays one published UDP port into the container's namespace."""

    def __init__(self, mapping: PortMapping) -> None:
        self.mapping = mapping
        family = socket.AF_INET6 if ":" in mapping.host_ip else socket.AF_INET
        self.host = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.host.bind((mapping.host_ip, mapping.host_port))
        except OSError as e:
            self.host.close()
            raise PortInUseError(
                f"cannot publish {mapping}: host port {mapping.host_ip}:{mapping.host_port}/udp "
                f"is already in use ({e.strerror})"
            ) from None
        self.host.setblocking(False)
        port = self.host.getsockname()[1]  # the chosen one, for host port 0
        self.mapping = PortMapping(mapping.host_ip, port, mapping.container_port, "udp")
        # Most recently heard last; beyond _MAX_PEERS the least recent client is forgotten.
        self.peers: collections.OrderedDict[tuple[Any, ...], tuple[socket.socket, anyio.CancelScope]] = (
            collections.OrderedDict()
        )

    async def run(self, holder_pid: int, join_user: bool) -> None:
        """Relay until cancelled. **Cancellation:** every socket is closed."""
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    await anyio.wait_readable(self.host)
                    try:
                        data, peer = self.host.recvfrom(65535)
                    except BlockingIOError:
                        continue
                    if peer in self.peers:
                        self.peers.move_to_end(peer)
                        inner = self.peers[peer][0]
                    else:
                        if len(self.peers) >= _MAX_PEERS:
                            self.peers.popitem(last=False)[1][1].cancel()  # its task closes it
                        inner = await self._open_inner(holder_pid, join_user)
                        scope = anyio.CancelScope()
                        self.peers[peer] = (inner, scope)
                        tg.start_soon(self._replies, inner, peer, scope)
                    with contextlib.suppress(OSError):  # no listener inside yet: dropped
                        inner.send(data)
        finally:
            self.close()

    async def _open_inner(self, holder_pid: int, join_user: bool) -> socket.socket:
        kind = (socket.AF_INET, socket.SOCK_DGRAM, 0)
        (inner,) = await anyio.to_thread.run_sync(
            lambda: sockets_in(holder_pid, [kind], join_user=join_user)
        )
        inner.connect(("127.0.0.1", self.mapping.container_port))
        inner.setblocking(False)
        return inner

    async def _replies(self, inner: socket.socket, peer: tuple[Any, ...],
                       scope: anyio.CancelScope) -> None:
        try:
            with scope:
                while True:
                    await anyio.wait_readable(inner)
                    with contextlib.suppress(OSError):
                        self.host.sendto(inner.recv(65535), peer)
        finally:
            inner.close()

    def close(self) -> None:
        """Close the host socket and every inner one."""
        for sock, _ in self.peers.values():
            sock.close()
        self.host.close()
        self.peers.clear()
