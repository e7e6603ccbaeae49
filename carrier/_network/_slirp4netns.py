"""slirp4netns: the fallback helper, a user-mode TCP/IP stack on a tap device.

Inside, tap0 is 10.0.2.100/24, the gateway 10.0.2.2 and the DNS forwarder 10.0.2.3. Host
loopback access is off unless asked for (``--disable-host-loopback``); with it on, 10.0.2.2
reaches the host's 127.0.0.1. It watches a pipe from the supervisor (``--exit-fd``), so it
ends with the supervisor, also after SIGKILL.

Its own port forwarding (``add_hostfwd`` on the API socket) is not used: it hung under 50
concurrent connections and reached a fraction of pasta's request rate (docs/performance.md).
Carrier publishes ports itself (``_forwarder`` for TCP, ``_udprelay`` for UDP).
"""

from __future__ import annotations

import os

from .._sandbox._holder import Holder
from .._util import _process
from .._util._errors import RuntimeFailure
from ._helper import Helper, HelperConfig, RunningHelper

GATEWAY = "10.0.2.2"
DNS_FORWARDER = "10.0.2.3"


class Slirp4netns(Helper):
    """slirp4netns, attached to the holder by PID."""

    name = "slirp4netns"
    package = "slirp4netns"
    dns_forwarder = DNS_FORWARDER

    def argv(self, holder: Holder, config: HelperConfig, exit_fd: int) -> list[str]:
        """The full command line."""
        argv = ["slirp4netns", "--configure", f"--mtu={config.mtu or 65520}", f"--exit-fd={exit_fd}"]
        if not config.host_loopback:
            argv.append("--disable-host-loopback")
        return [*argv, str(holder.pid), "tap0"]

    async def start(self, holder: Holder, config: HelperConfig) -> RunningHelper:
        exit_r, exit_w = os.pipe()
        log = open(config.log or os.devnull, "wb")  # noqa: SIM115, ASYNC230 - handed to the child
        try:
            child = _process.spawn(self.argv(holder, config, exit_r), stdout=log, stderr=log,
                                   pass_fds=[exit_r])
        except BaseException:
            os.close(exit_w)
            raise
        finally:
            log.close()
            os.close(exit_r)
        config.spawned(child)
        keep = os.fdopen(exit_w, "wb")
        try:
            state = await self._wait_ready(holder, child)
        except ChildProcessError:
            await child.kill()
            keep.close()
            text = config.log.read_text(errors="replace") if config.log else ""
            raise RuntimeFailure(f"slirp4netns failed: {text.strip() or 'exited during set-up'}") from None
        except BaseException:
            await child.kill()
            keep.close()
            raise
        host = GATEWAY if config.host_loopback else None
        return RunningHelper(self.name, child, state, host, keep_open=[keep])

