"""``network connect`` and ``disconnect`` of a running container: the part of its group that
joins and leaves named networks after the start (a mixin of ``_group._Group``).

A connection is made as a start joins its first network (the network's group started if need
be, a shared lock on its members, an address), on an ``ethN`` with no second default route;
the network's holder is watched, and its end ends the container's group (``network-exited``).
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .._network import _bridge
from .._network._options import check_hostname
from .._sandbox._holder import Holder
from .._state._records import Containers, Record, Status
from .._util._errors import CarrierError
from .._util._root import Root
from . import _netgroup
from ._control import answer
from ._handle import Outcome, Reason


class Connecting:
    """The connect and disconnect of a container's group; the group provides the state below."""

    root: Root
    record: Record
    containers: Containers
    holder: Holder | None
    attachment: _netgroup.Attachment | None  # the network it was started on
    run_tg: TaskGroup | None  # the running run's members, while it runs
    connected: dict[str, Connected]  # networks joined while running
    connecting: anyio.Lock  # one connect or disconnect at a time

    def end(self, outcome: Outcome, tg: TaskGroup) -> None:
        """Record the first member event and cancel the group (the group's own)."""
        raise NotImplementedError

    async def network_request(self, sock: socket.socket, request: dict[str, Any]) -> None:
        """``network connect``/``disconnect`` asked on the control socket: do it and answer
        ``{"ok": true}`` or the refusal (a task of the control socket's server; closes *sock*)."""
        with sock:
            reply: dict[str, Any] = {"ok": True}
            try:
                if isinstance(request.get("connect"), dict):
                    ask = request["connect"]
                    aliases = ask.get("aliases") or []
                    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
                        raise CarrierError("invalid connect request: aliases")
                    reply["network"] = await self.connect_network(
                        str(ask.get("network")), aliases,
                        str(ask["ip"]) if ask.get("ip") is not None else None)
                else:
                    await self.disconnect_network(str(request["disconnect"].get("network")))
            except Exception as e:
                reply = {"error": str(e) if isinstance(e, CarrierError)
                         else f"network {next(iter(request))} failed: {e!r}"}
            answer(sock, reply)

    async def connect_network(self, network: str, aliases: list[str],
                              ip: str | None) -> dict[str, Any]:
        """Join named network *network* while running, as a start joins its first one (the
        network's group started if need be, a shared lock on its members, an address), with an
        ``ethN`` on its bridge but no second default route, every member's hosts file naming
        it; its holder's end ends this group. Returns what the record shows of it."""
        name = self.record.name
        async with self.connecting:
            tg, holder, cpid = self.run_tg, self.holder, self.record.container_pid
            first = self.attachment
            if (tg is None or holder is None or cpid is None
                    or self.record.status is not Status.RUNNING):
                raise CarrierError(f"container {name} is not running")
            if first is None:
                raise CarrierError(f"container {name} is not on a named network "
                                   f"(--network {self.record.spec.network})")
            if network == first.network.name or network in self.connected:
                raise CarrierError(f"container {name} is already connected to network {network}")
            spec = self.record.spec
            for alias in aliases:
                check_hostname(alias, "--alias")
            names = list(dict.fromkeys([spec.hostname, *aliases]))
            att = await anyio.to_thread.run_sync(
                _netgroup.join, self.root, network, self.record.id, name, names,
                spec.host_loopback, ip)
            conn = Connected(att, "", anyio.CancelScope(), anyio.Event())
            try:
                if _userns(att.holder_pid) != _userns(holder.pid):
                    raise CarrierError(f"network {network} runs in a user namespace of its own "
                                       "(started by an older Carrier): connect after it restarts")
                conn.ifname = await anyio.to_thread.run_sync(_bridge.next_interface, holder.pid)
                net = att.network.network
                await anyio.to_thread.run_sync(lambda: _bridge.attach(
                    att.holder_pid, holder.pid, self.record.id, att.member.address,
                    net.prefixlen, att.network.gateway, spec.mtu, ifname=conn.ifname,
                    default_route=False))
                host_address = att.run.get("host_address")
                if host_address is not None:
                    await _netgroup.set_host_loopback(att.holder_pid, att.member.address,
                                                      host_address, spec.host_loopback)
                hosts = Path(f"/proc/{cpid}/root/etc/hosts")
                await anyio.to_thread.run_sync(
                    lambda: _netgroup.announce(self.root, att, hosts, keep=True))
                if self.run_tg is not tg:
                    raise CarrierError(f"container {name} ended meanwhile")
            except BaseException:
                conn.stopped.set()
                await self._release(conn, forget=True)
                raise
            tg.start_soon(self._watch_connected, tg, conn)
            self.connected[network] = conn
            self._save_networks()
            return conn.info()

    async def disconnect_network(self, network: str) -> None:
        """Leave network *network*, joined by :meth:`connect_network`: its interface goes, its
        members' hosts files (the own one too) stop naming it at once, the membership lock is
        released (the network's group may end) and its holder is no longer watched."""
        name = self.record.name
        async with self.connecting:
            if self.attachment is not None and network == self.attachment.network.name:
                raise CarrierError(f"container {name} was started on network {network}: it "
                                   "stays on it while it runs (only a network connected "
                                   "since can be disconnected)")
            conn = self.connected.pop(network, None)
            if conn is None:
                raise CarrierError(f"container {name} is not connected to network {network}")
            self._save_networks()
            await self._release(conn, forget=True)

    async def _watch_connected(self, tg: TaskGroup, conn: Connected) -> None:
        """A connected network's holder ended: so does this group (``network-exited``)."""
        try:
            with conn.watcher:
                await anyio.wait_readable(conn.attachment.holder_pidfd)
                message = f"the network {conn.attachment.network.name} ended (its holder exited)"
                self.end(Outcome(125, Reason.NETWORK_EXITED, message), tg)
        finally:
            conn.stopped.set()

    async def _release(self, conn: Connected, *, forget: bool) -> None:
        """Stop watching a connected network and leave it; with *forget* (the container goes
        on running) its interface and its host-loopback rule go first."""
        conn.watcher.cancel()
        with anyio.CancelScope(shield=True):
            await conn.stopped.wait()
            att = conn.attachment
            if forget:
                with contextlib.suppress(Exception):  # gone already when the network ended
                    await anyio.to_thread.run_sync(_bridge.detach, att.holder_pid, self.record.id)
                host_address = att.run.get("host_address")
                if host_address is not None:
                    with contextlib.suppress(Exception):
                        await _netgroup.set_host_loopback(att.holder_pid, att.member.address,
                                                          host_address, False)
            await anyio.to_thread.run_sync(
                lambda: _netgroup.leave(self.root, att, forget=forget))

    def _save_networks(self) -> None:
        """The networks connected since the start, in the record (``inspect`` shows them)."""
        if self.record.network is not None:
            self.record.network["connected"] = {n: c.info() for n, c in self.connected.items()}
            self.containers.save(self.record)

    async def release_connected(self) -> None:
        """At the end of a run: leave every network connected since the start (the interfaces
        went with the holder); a connection lasts for one run."""
        for network in list(self.connected):
            conn = self.connected.pop(network, None)  # a disconnect may have taken it meanwhile
            if conn is not None:
                await self._release(conn, forget=False)
        if self.record.network is not None:
            self.record.network.pop("connected", None)


@dataclass
class Connected:
    """A network joined while running (``network connect``)."""

    attachment: _netgroup.Attachment
    ifname: str
    watcher: anyio.CancelScope  # the watch of its holder
    stopped: anyio.Event  # that watch has ended

    def info(self) -> dict[str, Any]:
        """What the container's record shows of it."""
        att = self.attachment
        return {"interface": self.ifname,
                "address": f"{att.member.address}/{att.network.network.prefixlen}",
                "gateway": att.network.gateway, "aliases": list(att.member.aliases)}


def _userns(pid: int) -> int:
    """The inode of process *pid*'s user namespace."""
    return os.stat(f"/proc/{pid}/ns/user").st_ino
