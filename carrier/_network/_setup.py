"""A container's network, set up before its command runs and torn down after it ends.

In order: the holder's namespace exists (``_sandbox``), ``lo`` is up, resolv.conf is written,
the helper is started (its ``network.pid`` written at once) and the namespace confirmed
configured over netlink, then /etc/hosts (which needs the address the helper gave). Only then
does the runtime start the command.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._sandbox._holder import Holder
from .._state._records import Spec
from .._util import _process
from .._util._atomic import write_bytes
from .._util._errors import CarrierError
from .._util._logging import log
from . import _netlink
from ._choice import choose
from ._dns import DnsOptions, Forwarder, Hosts, ResolvConf, container_resolv_conf, read_host_resolv_conf
from ._helper import RESOLV_CONF, Helper, HelperConfig, RunningHelper
from ._options import parse_add_host
from ._ports import check_free, parse_ports, pick_free
from ._udprelay import UdpRelay


def run_dir() -> Path:
    """A private directory for sockets: ``$XDG_RUNTIME_DIR/carrier``, else ``run/`` under the
    Carrier root, never a predictable shared path (another user could take it). A socket path
    must fit in 108 bytes and a Carrier root's need not: the directory under the root is
    reached through ``/proc/<this process>/fd/<O_PATH descriptor>``, short, and valid for the
    helpers this process starts (they are this user's)."""
    from .._util._root import default_root

    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "carrier" if base else default_root().absolute() / "run"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise CarrierError(f"{path} is not a private directory of this user: remove it")
    if base:
        return path
    key = (os.getpid(), str(path))
    if key not in _RUN_DIR_FDS:  # one descriptor per process and directory, kept open
        _RUN_DIR_FDS[key] = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return Path(f"/proc/{key[0]}/fd/{_RUN_DIR_FDS[key]}")


_RUN_DIR_FDS: dict[tuple[int, str], int] = {}


def _etc(rootfs: Path) -> Path:
    etc = rootfs / "etc"
    if etc.is_symlink():
        raise CarrierError("the image's /etc is a symlink: refusing to write through it")
    etc.mkdir(mode=0o755, exist_ok=True)
    return etc


@dataclass
class ContainerNetwork:
    """The network of one running container."""

    mode: str
    helper: RunningHelper | None = None
    pid_file: Path | None = None
    socket_path: Path | None = None
    relays: list[UdpRelay] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    async def run_relays(self, holder: Holder) -> None:
        """Relay the published UDP ports until cancelled (a member of the container's group)."""
        address = str(self.info.get("address") or "").split("/")[0] or None
        async with anyio.create_task_group() as tg:
            for relay in self.relays:  # to the container's own address, then its loopback
                tg.start_soon(relay.run, holder.pid, holder.userns, address)

    async def stop(self) -> None:
        """End the helper and remove its files. **Cancellation:** shielded."""
        with anyio.CancelScope(shield=True):
            for relay in self.relays:
                relay.close()
            if self.helper is not None:
                await self.helper.stop()
            for path in (self.pid_file, self.socket_path):
                if path is not None:
                    path.unlink(missing_ok=True)


def plan_dns(spec: Spec, helper: Helper | None) -> tuple[ResolvConf, Forwarder | None]:
    """The container's resolv.conf, and the helper's DNS forwarder when that file uses it (the
    helper is told to forward only then; see ``_dns``)."""
    opts = DnsOptions(tuple(spec.dns), tuple(spec.dns_search), tuple(spec.dns_option))
    host_text = read_host_resolv_conf(Path(spec.resolv_conf))
    forwarder = None
    if helper is not None:  # the helpers read /etc/resolv.conf, whatever file Carrier reads
        same = Path(spec.resolv_conf) == RESOLV_CONF
        forwarder = helper.forwarder(host_text if same else read_host_resolv_conf(RESOLV_CONF))
    # In the host's own network namespace, the host's loopback resolvers are reachable.
    resolv = container_resolv_conf(host_text, forwarder, opts, keep_loopback=spec.network == "host")
    used = forwarder is not None and forwarder.address in resolv.nameservers
    return resolv, forwarder if used else None


def write_files(rootfs: Path, kept: Path, spec: Spec, name: str, *, resolv: ResolvConf,
                forwarder: Forwarder | None, state: _netlink.NetState | None,
                host_address: str | None) -> dict[str, Any]:
    """Write resolv.conf, hosts and hostname into the container's /etc (copies into *kept*, for
    ``exec``'s repair); return the DNS info."""
    etc = _etc(rootfs)
    write_bytes(etc / "resolv.conf", resolv.render().encode(), mode=0o644)
    write_bytes(kept / "resolv.conf", resolv.render().encode(), mode=0o644)
    hosts = Hosts(
        hostname=spec.hostname, name=name,
        address=state.address if state else None, host_gateway=host_address,
        extra=tuple(parse_add_host(h) for h in spec.add_host),
    )
    write_bytes(etc / "hosts", hosts.render().encode(), mode=0o644)
    write_bytes(kept / "hosts", hosts.render().encode(), mode=0o644)  # kept for repair
    write_bytes(etc / "hostname", f"{spec.hostname}\n".encode(), mode=0o644)
    return {"nameservers": list(resolv.nameservers), "search": list(resolv.search),
            "options": list(resolv.options),
            "forwarder": f"{forwarder.address} -> {forwarder.upstream}" if forwarder else None}


async def setup(spec: Spec, name: str, holder: Holder, cdir: Path, rootfs: Path) -> ContainerNetwork:
    """Connect *holder*'s namespace as *spec* asks and write the network files into *rootfs*.

    **Cancellation:** a started helper is stopped before the cancellation propagates.
    """
    helper = choose(spec.network)
    if holder.netns:
        await anyio.to_thread.run_sync(
            lambda: _netlink.loopback_up(holder.pid, join_user=holder.userns)
        )
    resolv, forwarder = plan_dns(spec, helper)
    if helper is None:
        dns = write_files(rootfs, cdir, spec, name, resolv=resolv, forwarder=None, state=None,
                          host_address=None)
        mode = spec.network if spec.network in ("none", "host") else "none"
        return ContainerNetwork(mode, info={"mode": mode, "dns": dns})
    ports = pick_free(parse_ports(spec.ports))
    tcp = [p for p in ports if p.proto == "tcp"]
    check_free(tcp)
    write_files(rootfs, cdir, spec, name, resolv=resolv, forwarder=forwarder, state=None,
                host_address=None)
    socket_path = run_dir() / f"{os.path.basename(cdir)[:16]}.slirp.sock"
    socket_path.unlink(missing_ok=True)
    relays: list[UdpRelay] = []
    try:
        relays += [UdpRelay(p) for p in ports if p.proto == "udp"]
        config = HelperConfig(ports=tcp, host_loopback=spec.host_loopback, mtu=spec.mtu,
                              dns_forward=forwarder.address if forwarder else None,
                              log=cdir / "network.log", socket_path=socket_path,
                              pid_file=cdir / "network.pid")
        running = await helper.start(holder, config)
    except BaseException:
        for relay in relays:
            relay.close()
        (cdir / "network.pid").unlink(missing_ok=True)
        raise
    net = ContainerNetwork(helper.name, running, cdir / "network.pid", socket_path, relays)
    ports = tcp + [relay.mapping for relay in relays]
    try:
        dns = write_files(rootfs, cdir, spec, name, resolv=resolv, forwarder=forwarder,
                          state=running.state, host_address=running.host_address)
    except BaseException:
        await net.stop()
        raise
    st = running.state
    net.info = {
        "mode": helper.name, "helper_pid": running.child.pid, "interface": st.ifname,
        "address": f"{st.address}/{st.prefixlen}", "gateway": st.gateway, "mtu": st.mtu,
        "host_loopback": spec.host_loopback, "host_address": running.host_address,
        "ports": [str(p) for p in ports], "published": [p.to_json() for p in ports], "dns": dns,
    }
    log.info("network.ready", helper=helper.name, address=st.address, gateway=st.gateway)
    return net


def reap_stale_helper(cdir: Path) -> None:
    """End the helper recorded in ``network.pid`` if it is still that process; remove the file."""
    _process.kill_recorded(cdir / "network.pid")
    with contextlib.suppress(OSError):
        (run_dir() / f"{cdir.name[:16]}.slirp.sock").unlink(missing_ok=True)
