"""The network helper interface, and the choice between pasta and slirp4netns.

A helper connects a holder's network namespace to the host's network from user space. Each
backend (``_pasta``, ``_slirp4netns``) starts its helper, waits until the namespace is
configured (confirmed over netlink, never assumed), and says which address inside reaches
the host's loopback, which one forwards DNS, and to which host nameserver. Ports are published
by Carrier itself (``_forwarder``, ``_udprelay``), not by the helpers.
"""

from __future__ import annotations

import abc
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import anyio

from .._sandbox._holder import Holder
from .._util import _process
from .._util._errors import CarrierError
from . import _netlink
from ._dns import Forwarder, first_ipv4_nameserver

READY_TIMEOUT = 10.0
RESOLV_CONF = Path("/etc/resolv.conf")  # what pasta and slirp4netns read, whatever Carrier reads


@dataclass(frozen=True)
class HelperConfig:
    """What a helper needs to know about the container."""

    host_loopback: bool = False
    mtu: int | None = None  # None: the helper's default (65520 for both)
    dns_forward: str | None = None  # the forwarder's address, when the container's resolv.conf uses it
    log: Path | None = None
    pid_file: Path | None = None

    def spawned(self, child: _process.Child) -> None:
        """Record the helper's PID and start time at once, before anything can go wrong, so
        that the next carrier command finds it even if this supervisor dies during set-up."""
        if self.pid_file is not None:
            _process.write_pid_file(self.pid_file, child.pid)


@dataclass
class RunningHelper:
    """A started helper and the network it configured."""

    name: str
    child: _process.Child
    state: _netlink.NetState
    host_address: str | None
    keep_open: list[object] = field(default_factory=list)  # pipes the helper watches

    async def stop(self) -> None:
        """SIGTERM, a second for it to go, then SIGKILL; always reaped. **Cancellation:** shielded."""
        with anyio.CancelScope(shield=True):
            self.child.signal(15)
            with anyio.move_on_after(1):
                await self.child.wait()
            await self.child.kill()
            for obj in self.keep_open:
                close = getattr(obj, "close", None)
                if close is not None:
                    close()


class Helper(abc.ABC):
    """One kind of network helper."""

    name: ClassVar[str]
    package: ClassVar[str]
    dns_forwarder: ClassVar[str | None]

    @classmethod
    def available(cls) -> bool:
        """Whether the helper's binary is installed."""
        return shutil.which(cls.name) is not None

    @classmethod
    def forwarder(cls, resolv_text: str) -> Forwarder | None:
        """The DNS forwarder and the host nameserver it sends to, given the text of
        /etc/resolv.conf; None without a forwarder or an IPv4 nameserver to send to."""
        upstream = cls.dns_upstream(resolv_text)
        if cls.dns_forwarder is None or upstream is None:
            return None
        return Forwarder(cls.dns_forwarder, upstream)

    @classmethod
    def dns_upstream(cls, resolv_text: str) -> str | None:
        """The nameserver the forwarder sends to: the first IPv4 one (libslirp's reading)."""
        return first_ipv4_nameserver(resolv_text)

    @abc.abstractmethod
    async def start(self, holder: Holder, config: HelperConfig) -> RunningHelper:
        """Start the helper on *holder*, wait until the namespace is configured.

        **Cancellation:** the helper is killed before the cancellation propagates.
        """

    async def _wait_ready(self, holder: Holder, child: _process.Child) -> _netlink.NetState:
        try:
            return await anyio.to_thread.run_sync(
                lambda: _netlink.wait_configured(
                    holder.pid, join_user=holder.userns, helper_pidfd=child.pidfd,
                    timeout=READY_TIMEOUT,
                )
            )
        except _netlink.NetworkNotReady as e:
            raise CarrierError(f"{self.name}: {e}") from None


