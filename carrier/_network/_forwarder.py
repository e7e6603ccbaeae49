"""Carrier's own TCP port forwarder, used with both helpers (docs/networking.md, Ports).

The helpers' own forwarders fall short here: slirp4netns's (``add_hostfwd``) hung under 50
concurrent connections and reached a fraction of pasta's request rate (Podman avoids it with a
process of its own, rootlessport); pasta's (Debian 12's 2023-03-09 build) cut off the last bytes
of connections that half-close when dozens run at once, and never reaches a server bound to
the container's own address. So the supervisor binds the host ports itself (a taken port fails
the start with a clear message and nothing left) and hands the listening sockets to one small
process, ``_tcprelay``, started inside the container's network namespace. That process is a
member of the container's group: its exit ends the group, and it ends with the supervisor (it
watches a pipe only the supervisor holds).
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from .._sandbox._holder import Holder
from .._util import _process
from ._ports import PortMapping, host_socket

_RELAY = Path(__file__).with_name("_tcprelay.py")


def bind(mapping: PortMapping) -> tuple[socket.socket, PortMapping]:
    """Listen on *mapping*'s host address and port (0: any free one); return the socket and the
    mapping with the port the kernel chose."""
    sock = host_socket(mapping)
    port = sock.getsockname()[1]
    return sock, PortMapping(mapping.host_ip, port, mapping.container_port, "tcp")


@dataclass
class TcpForwarder:
    """The published TCP ports of one container and, once started, the relay process."""

    listeners: list[socket.socket] = field(default_factory=list)
    mappings: list[PortMapping] = field(default_factory=list)
    child: _process.Child | None = None
    log: Path | None = None
    _exit_w: int | None = None

    @classmethod
    def bind_all(cls, mappings: list[PortMapping]) -> TcpForwarder:
        """Bind every host port now, before anything starts; all or none."""
        forwarder = cls()
        try:
            for mapping in mappings:
                sock, bound = bind(mapping)
                forwarder.listeners.append(sock)
                forwarder.mappings.append(bound)
        except BaseException:
            forwarder.close()
            raise
        return forwarder

    def argv(self, holder: Holder, address: str, exit_fd: int) -> list[str]:
        """``nsenter`` into the holder's network namespace, then the relay (standard library
        only, so ``-I -S``: no site packages to scan, nothing from the environment)."""
        enter = ["nsenter", "-t", str(holder.pid), "-n"]
        if holder.userns:
            enter += ["-U", "--preserve-credentials"]
        pairs = [f"{sock.fileno()}:{mapping.container_port}"
                 for sock, mapping in zip(self.listeners, self.mappings, strict=True)]
        return [*enter, sys.executable, "-I", "-S", str(_RELAY), "--exit-fd", str(exit_fd),
                "--address", address, "--address", "127.0.0.1", *pairs]

    def start(self, holder: Holder, address: str, log: Path) -> None:
        """Start the relay inside *holder*'s network namespace, to *address* (the container's)
        and then 127.0.0.1. It need not be waited for: connections queue on the listening
        sockets until it accepts them."""
        exit_r, exit_w = os.pipe()
        try:
            with open(log, "wb") as out:
                self.child = _process.spawn(
                    self.argv(holder, address, exit_r), stdout=out, stderr=out,
                    pass_fds=[exit_r, *(s.fileno() for s in self.listeners)],
                )
        except BaseException:
            os.close(exit_w)
            raise
        finally:
            os.close(exit_r)
        self._exit_w, self.log = exit_w, log
        for sock in self.listeners:  # the relay holds them now; they close with it
            sock.close()
        self.listeners.clear()

    async def wait(self) -> str:
        """Wait until the relay exits; return why, for the group's outcome."""
        assert self.child is not None
        code = _process.exit_status(await self.child.wait())
        tail = ""
        if self.log is not None:
            lines = self.log.read_text(errors="replace").strip().splitlines()
            tail = f": {lines[-1]}" if lines else ""
        return f"the TCP port forwarder exited (status {code}){tail}"

    async def stop(self) -> None:
        """Close its pipe (it exits on that), wait a second, then SIGKILL; always reaped.
        **Cancellation:** shielded."""
        with anyio.CancelScope(shield=True):
            self.close()
            if self.child is not None:
                with anyio.move_on_after(1):
                    await self.child.wait()
                await self.child.kill()

    def close(self) -> None:
        """Release the listening sockets and the exit pipe (the relay then ends)."""
        for sock in self.listeners:
            sock.close()
        self.listeners.clear()
        if self._exit_w is not None:
            os.close(self._exit_w)
            self._exit_w = None
