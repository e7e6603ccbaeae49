"""A container's network, set up before its command runs and torn down after it ends.

In order: the holder's namespace exists (``_sandbox``), ``lo`` is up, resolv.conf is written,
the helper is started (its ``network.pid`` written at once) and the namespace confirmed
configured over netlink, then /etc/hosts (which needs the address the helper gave). Only then
does the runtime start the command.
"""

from __future__ import annotations

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
from . import _bridge, _netlink
from ._choice import choose
from ._dns import DnsOptions, Forwarder, Hosts, ResolvConf, container_resolv_conf, read_host_resolv_conf
from ._forwarder import TcpForwarder
from ._helper import RESOLV_CONF, Helper, HelperConfig, RunningHelper
from ._options import HOST_GATEWAY, parse_add_host
from ._ports import parse_ports
from ._udprelay import UdpRelay


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
    relays: list[UdpRelay] = field(default_factory=list)
    tcp_forwarder: TcpForwarder | None = None
    info: dict[str, Any] = field(default_factory=dict)
    address: str | None = None  # on a named network: the container's bridge address
    resolv: ResolvConf | None = None  # what write_network_files writes (set by start)
    forwarder: Forwarder | None = None  # the helper's DNS forwarder, when resolv.conf uses it

    @property
    def forwards(self) -> bool:
        """Whether Carrier itself carries published ports (UDP relays, the TCP forwarder)."""
        return bool(self.relays) or self.tcp_forwarder is not None

    async def forward_ports(self, holder: Holder) -> None:
        """Relay the published UDP ports and watch the TCP forwarder until cancelled (a member
        of the container's group); raise if the forwarder exits."""
        address = self.helper.state.address if self.helper is not None else self.address
        ended: str | None = None
        async with anyio.create_task_group() as tg:
            for relay in self.relays:
                tg.start_soon(relay.run, holder.pid, holder.userns, address)
            if self.tcp_forwarder is not None:
                ended = await self.tcp_forwarder.wait()
                tg.cancel_scope.cancel()
        if ended is not None:
            raise CarrierError(ended)

    async def stop(self) -> None:
        """End the forwarders and the helper and remove its files. **Cancellation:** shielded."""
        with anyio.CancelScope(shield=True):
            for relay in self.relays:
                relay.close()
            if self.tcp_forwarder is not None:
                await self.tcp_forwarder.stop()
            if self.helper is not None:
                await self.helper.stop()
            if self.pid_file is not None:
                self.pid_file.unlink(missing_ok=True)


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
    # Written anew at every start, so not fsync'd: a crash can lose them only when they are
    # about to be rewritten.
    write_bytes(etc / "resolv.conf", resolv.render().encode(), mode=0o644, durable=False)
    write_bytes(kept / "resolv.conf", resolv.render().encode(), mode=0o644, durable=False)
    hosts = Hosts(
        hostname=spec.hostname, name=name,
        address=state.address if state else None, host_gateway=host_address,
        extra=_add_hosts(spec.add_host, host_address),
    )
    write_bytes(etc / "hosts", hosts.render().encode(), mode=0o644, durable=False)
    write_bytes(kept / "hosts", hosts.render().encode(), mode=0o644, durable=False)  # for repair
    write_bytes(etc / "hostname", f"{spec.hostname}\n".encode(), mode=0o644, durable=False)
    return {"nameservers": list(resolv.nameservers), "search": list(resolv.search),
            "options": list(resolv.options),
            "forwarder": f"{forwarder.address} -> {forwarder.upstream}" if forwarder else None}


def _add_hosts(items: list[str], host_address: str | None) -> tuple[tuple[str, str], ...]:
    """The ``--add-host`` entries, ``host-gateway`` as *host_address* (left out until the
    helper runs and it is known)."""
    entries = []
    for name, ip in map(parse_add_host, items):
        if ip == HOST_GATEWAY:
            if host_address is None:
                continue
            ip = host_address
        entries.append((name, ip))
    return tuple(entries)


async def setup(spec: Spec, name: str, holder: Holder, cdir: Path, rootfs: Path) -> ContainerNetwork:
    """Connect *holder*'s namespace as *spec* asks and write the network files into *rootfs*.

    **Cancellation:** a started helper is stopped before the cancellation propagates.
    """
    net = await start(spec, holder, cdir)
    try:
        write_network_files(net, spec, name, cdir, rootfs)
    except BaseException:
        await net.stop()
        raise
    return net


async def start(spec: Spec, holder: Holder, cdir: Path) -> ContainerNetwork:
    """Connect *holder*'s namespace as *spec* asks: ``lo`` up, the published ports bound, the
    helper started and the namespace configured. The container's files come after, from
    :func:`write_network_files`: the root filesystem may be made meanwhile.

    **Cancellation:** a started helper is stopped before the cancellation propagates.
    """
    helper = choose(spec.network)
    if holder.netns and helper is None:  # a helper's readiness wait sets lo up (_netlink)
        await anyio.to_thread.run_sync(
            lambda: _netlink.loopback_up(holder.pid, join_user=holder.userns)
        )
    resolv, forwarder = plan_dns(spec, helper)
    if helper is None:
        mode = spec.network if spec.network in ("none", "host") else "none"
        return ContainerNetwork(mode, info={"mode": mode}, resolv=resolv)
    ports = parse_ports(spec.ports)
    tcp = [p for p in ports if p.proto == "tcp"]
    relays: list[UdpRelay] = []
    tcp_forwarder: TcpForwarder | None = None
    try:
        # Carrier publishes every port itself, bound now: a taken port fails before the helper.
        relays += [UdpRelay(p) for p in ports if p.proto == "udp"]
        if tcp:
            tcp_forwarder = TcpForwarder.bind_all(tcp)
        config = HelperConfig(host_loopback=spec.host_loopback, mtu=spec.mtu,
                              dns_forward=forwarder.address if forwarder else None,
                              log=cdir / "network.log", pid_file=cdir / "network.pid")
        running = await helper.start(holder, config)
    except BaseException:
        for relay in relays:
            relay.close()
        if tcp_forwarder is not None:
            tcp_forwarder.close()
        (cdir / "network.pid").unlink(missing_ok=True)
        raise
    net = ContainerNetwork(helper.name, running, cdir / "network.pid", relays, tcp_forwarder,
                           resolv=resolv, forwarder=forwarder)
    try:
        if tcp_forwarder is not None:
            tcp_forwarder.start(holder, running.state.address, cdir / "forwarder.log")
    except BaseException:
        await net.stop()
        raise
    return net


def write_network_files(net: ContainerNetwork, spec: Spec, name: str, cdir: Path,
                        rootfs: Path) -> None:
    """Write resolv.conf, hosts and hostname of the network :func:`start` made into *rootfs*
    (copies into *cdir*) and complete ``net.info``; the caller stops *net* if this fails."""
    assert net.resolv is not None
    running = net.helper
    if running is None:
        net.info["dns"] = write_files(rootfs, cdir, spec, name, resolv=net.resolv, forwarder=None,
                                      state=None, host_address=None)
        return
    tcp_forwarder = net.tcp_forwarder
    ports = (tcp_forwarder.mappings if tcp_forwarder else []) + [r.mapping for r in net.relays]
    dns = write_files(rootfs, cdir, spec, name, resolv=net.resolv, forwarder=net.forwarder,
                      state=running.state, host_address=running.host_address)
    st = running.state
    net.info = {
        "mode": net.mode, "helper_pid": running.child.pid, "interface": st.ifname,
        "address": f"{st.address}/{st.prefixlen}", "gateway": st.gateway, "mtu": st.mtu,
        "host_loopback": spec.host_loopback, "host_address": running.host_address,
        "ports": [str(p) for p in ports], "published": [p.to_json() for p in ports], "dns": dns,
    }
    if tcp_forwarder is not None and tcp_forwarder.child is not None:
        net.info["forwarder_pid"] = tcp_forwarder.child.pid
    log.info("network.ready", helper=net.mode, address=st.address, gateway=st.gateway)


def reap_stale_helper(cdir: Path) -> None:
    """End the helper recorded in ``network.pid`` if it is still that process; remove the file."""
    _process.kill_recorded(cdir / "network.pid")


@dataclass(frozen=True)
class Bridged:
    """Where a container sits on a named network (from its network's run state)."""

    network_holder: int
    address: str
    prefixlen: int
    gateway: str
    helper: str | None  # None on an internal network
    host_address: str | None  # the helper's host-loopback mapping (None: internal)


async def setup_bridged(spec: Spec, name: str, holder: Holder, cdir: Path, rootfs: Path,
                        where: Bridged) -> ContainerNetwork:
    """Give *holder*'s namespace its eth0 on the network's bridge, write the network files and
    publish its ports.

    resolv.conf: ``--dns`` if given, else the network helper's DNS forwarder (reached through
    the network's namespace); an internal network gets no outside DNS, only ``--dns``.
    """
    ports = parse_ports(spec.ports)
    # Published ports are bound now (a taken port fails before anything else), and relayed
    # from inside the container's own namespace to its bridge address, as without a network.
    relays = [UdpRelay(p) for p in ports if p.proto == "udp"]
    tcp = [p for p in ports if p.proto == "tcp"]
    try:
        tcp_forwarder = TcpForwarder.bind_all(tcp) if tcp else None
    except BaseException:
        for relay in relays:
            relay.close()
        raise
    net = ContainerNetwork("bridge", relays=relays, tcp_forwarder=tcp_forwarder,
                           address=where.address)
    try:
        net.info = await _bridged_files(spec, name, holder, cdir, rootfs, where)
        if tcp_forwarder is not None:
            tcp_forwarder.start(holder, where.address, cdir / "forwarder.log")
            net.info["forwarder_pid"] = tcp_forwarder.child.pid if tcp_forwarder.child else None
    except BaseException:
        await net.stop()
        raise
    published = (tcp_forwarder.mappings if tcp_forwarder else []) + [r.mapping for r in relays]
    net.info["ports"] = [str(p) for p in published]
    net.info["published"] = [p.to_json() for p in published]
    log.info("network.ready", helper="bridge", address=where.address, gateway=where.gateway)
    return net


async def _bridged_files(spec: Spec, name: str, holder: Holder, cdir: Path, rootfs: Path,
                         where: Bridged) -> dict[str, Any]:
    """eth0 on the bridge, then resolv.conf, hosts and hostname; the network info."""
    await anyio.to_thread.run_sync(lambda: _netlink.loopback_up(holder.pid, join_user=True))
    await anyio.to_thread.run_sync(lambda: _bridge.attach(
        where.network_holder, holder.pid, holder_cid(cdir), where.address, where.prefixlen,
        where.gateway, spec.mtu))
    helper = choose(where.helper) if where.helper is not None else None
    if helper is None:
        resolv = ResolvConf(tuple(spec.dns), tuple(spec.dns_search), tuple(spec.dns_option))
        forwarder = None
    else:
        resolv, forwarder = plan_dns(spec, helper)
    host_address = where.host_address if spec.host_loopback else None
    state = _netlink.NetState("eth0", where.address, where.prefixlen, where.gateway,
                              spec.mtu or _bridge.MTU)
    dns = write_files(rootfs, cdir, spec, name, resolv=resolv, forwarder=forwarder, state=state,
                      host_address=host_address)
    return {"mode": "bridge", "interface": "eth0", "address": f"{where.address}/{where.prefixlen}",
            "gateway": where.gateway, "mtu": state.mtu, "host_loopback": spec.host_loopback,
            "host_address": host_address, "ports": [], "published": [], "dns": dns}


def holder_cid(cdir: Path) -> str:
    """The container's id: the name of its directory."""
    return cdir.name


def setup_joined(spec: Spec, name: str, cdir: Path, rootfs: Path, owner: str, owner_dir: Path,
                 owner_info: dict[str, Any], owner_hosts: str | None = None) -> ContainerNetwork:
    """``--network container:OWNER``: no network of its own; resolv.conf and hosts are the
    owner's (the copies Carrier wrote for it; *owner_hosts*, its hosts file as it is now with
    the names of its named network's members, when given), with this container's own names
    added."""
    etc = _etc(rootfs)
    resolv = (owner_dir / "resolv.conf").read_bytes()
    hosts = owner_hosts if owner_hosts is not None else \
        (owner_dir / "hosts").read_text(errors="replace")
    if hosts and not hosts.endswith("\n"):
        hosts += "\n"
    address = str(owner_info.get("address") or "127.0.1.1").split("/")[0]
    hosts += f"{address}\t{' '.join(dict.fromkeys([spec.hostname, name]))}\n"
    for dest in (etc, cdir):  # the copies in cdir are kept for exec's repair
        write_bytes(dest / "resolv.conf", resolv, mode=0o644)
        write_bytes(dest / "hosts", hosts.encode(), mode=0o644)
    write_bytes(etc / "hostname", f"{spec.hostname}\n".encode(), mode=0o644)
    info: dict[str, Any] = {
        **{k: owner_info.get(k) for k in ("interface", "address", "gateway", "mtu", "dns")},
        "mode": f"container:{owner}", "ports": [], "published": [],
    }
    return ContainerNetwork("container", info=info)
