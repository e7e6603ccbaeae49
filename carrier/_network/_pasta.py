"""pasta (from passt): the preferred helper. It copies the host's uplink into the namespace.

Host loopback access is off unless asked for (``--no-map-gw``); with it on, the gateway address
inside reaches the host's 127.0.0.1. ``--dns-forward 169.254.1.1`` sends DNS queries to that
address to pasta's first nameserver (a host stub such as 127.0.0.53 included), and rewrites the
source of *every* reply from that nameserver to 169.254.1.1. So pasta gets it only when the
container's resolv.conf uses the forwarder, and ``-D none`` otherwise: no DNS rewriting at all
(plain pasta, given a loopback nameserver and host loopback access, would send the gateway's
DNS to its first nameserver and rewrite those replies to come from the gateway). The Debian 12
pasta does not quit when its namespace goes away, so the supervisor always ends it, and a
parent-death signal ends it with a supervisor that was killed.
"""

from __future__ import annotations

import ipaddress
import os
import shutil

from .._sandbox._holder import Holder
from .._util import _process
from .._util._errors import RuntimeFailure
from ._helper import Helper, HelperConfig, RunningHelper

DNS_FORWARDER = "169.254.1.1"


def first_nameserver(resolv_text: str) -> str | None:
    """The nameserver pasta forwards to, read as pasta (Debian 12's, 2023-03-09) reads
    /etc/resolv.conf: the first line starting ``nameserver `` whose text after its last space,
    cut at ``%``, is an IPv4 address. Unlike glibc, pasta skips such a line with a tab after
    ``nameserver``, a trailing space or comment, or a CR."""
    for line in resolv_text.split("\n"):
        if not line.startswith("nameserver "):
            continue
        word = line[line.rindex(" ") + 1:].split("%", 1)[0]
        try:
            return str(ipaddress.IPv4Address(word))
        except ValueError:
            continue
    return None


class Pasta(Helper):
    """pasta, attached to the holder by PID."""

    name = "pasta"
    package = "passt"
    dns_forwarder = DNS_FORWARDER

    @classmethod
    def available(cls) -> bool:
        """pasta, and setpriv (util-linux) for its parent-death signal."""
        return super().available() and shutil.which("setpriv") is not None

    @classmethod
    def dns_upstream(cls, resolv_text: str) -> str | None:
        """pasta's own reading of /etc/resolv.conf (it differs from glibc's)."""
        return first_nameserver(resolv_text)

    def argv(self, holder: Holder, config: HelperConfig) -> list[str]:
        """The full command line."""
        argv = ["setpriv", "--pdeathsig", "KILL", "--", "pasta", "--config-net", "--quiet",
                "--foreground"]
        # The forwarder only when used: it rewrites every reply from pasta's first nameserver.
        argv += ["--dns-forward", config.dns_forward] if config.dns_forward else ["-D", "none"]
        if os.geteuid() == 0:
            argv += ["--runas", "0"]  # as root pasta would drop to nobody and lose the namespace
        if not config.host_loopback:
            argv.append("--no-map-gw")
        if config.mtu is not None:
            argv += ["--mtu", str(config.mtu)]
        # Carrier publishes ports itself (carrier/_network/_forwarder.py): pasta forwards none.
        return [*argv, "-t", "none", "-u", "none", "-T", "none", "-U", "none", str(holder.pid)]

    async def start(self, holder: Holder, config: HelperConfig) -> RunningHelper:
        log = open(config.log or os.devnull, "wb")  # noqa: SIM115, ASYNC230 - handed to the child
        try:
            child = _process.spawn(self.argv(holder, config), stdout=log, stderr=log)
        finally:
            log.close()
        config.spawned(child)
        try:
            state = await self._wait_ready(holder, child)
        except ChildProcessError:
            await child.kill()
            text = config.log.read_text(errors="replace") if config.log else ""
            raise self._failed(text) from None
        except BaseException:
            await child.kill()
            raise
        host = state.gateway if config.host_loopback else None
        return RunningHelper(self.name, child, state, host)

    def _failed(self, text: str) -> Exception:
        lines = [ln for ln in text.splitlines() if ln and "syslog" not in ln and "IPv6" not in ln]
        return RuntimeFailure(f"pasta failed: {lines[-1] if lines else 'exited during set-up'}")

