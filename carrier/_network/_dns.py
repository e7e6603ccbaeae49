"""The container's /etc/resolv.conf and /etc/hosts.

Nameservers come from the host's resolv.conf. A helper's DNS forwarder sends the queries it gets
to one host nameserver only, its *upstream* (the first IPv4 one, as the helper reads
/etc/resolv.conf), so the forwarder stands in for that nameserver, in its place, and that
address is never listed directly: pasta rewrites the source of every reply from it to the
forwarder's address, which a resolver that asked the upstream itself drops. Other loopback
nameservers cannot be reached from the container's namespace and are left out; other routable
ones are kept. With none left, 8.8.8.8 and 8.8.4.4 are used, as Docker and Podman do. ``--dns``,
``--dns-search`` and ``--dns-option`` override.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

FALLBACK = ("8.8.8.8", "8.8.4.4")


@dataclass(frozen=True)
class ResolvConf:
    """The parts of a resolv.conf that Carrier carries over."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        """The file's text."""
        lines = [f"nameserver {ns}" for ns in self.nameservers]
        if self.search:
            lines.append("search " + " ".join(self.search))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    """Read nameservers, the search list (the last line wins) and options (all lines add up)."""
    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and args:
            nameservers.append(args[0])
        elif key in ("search", "domain"):
            search = args
        elif key == "options":
            options += args
    return ResolvConf(tuple(nameservers), tuple(search), tuple(options))


def first_ipv4_nameserver(text: str) -> str | None:
    """The first IPv4 nameserver of a resolv.conf, read as glibc and libslirp read it."""
    for ns in parse_resolv_conf(text).nameservers:
        if _ipv4(ns) is not None:
            return ns
    return None


def _ipv4(addr: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(addr)
    except ValueError:
        return None


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return a == b


@dataclass(frozen=True)
class Forwarder:
    """A helper's DNS forwarder: queries to *address* inside go to *upstream* on the host."""

    address: str
    upstream: str


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return True  # unparseable: unusable


@dataclass(frozen=True)
class DnsOptions:
    """The user's overrides (``--dns``, ``--dns-search``, ``--dns-option``)."""

    servers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def container_resolv_conf(host_text: str, forwarder: Forwarder | None, opts: DnsOptions, *,
                          keep_loopback: bool = False) -> ResolvConf:
    """The container's resolv.conf from the host's text, the helper's forwarder and overrides.

    The forwarder takes the place of its upstream (once); other loopback nameservers are left
    out, unless *keep_loopback* (a container in the host's own network namespace).
    """
    host = parse_resolv_conf(host_text)
    servers: list[str] = []
    for ns in host.nameservers:
        if keep_loopback:
            servers.append(ns)
        elif forwarder is not None and _same_address(ns, forwarder.upstream):
            if forwarder.address not in servers:
                servers.append(forwarder.address)
        elif not _is_loopback(ns):
            servers.append(ns)
    if opts.servers:
        servers = list(opts.servers)
    elif not servers:
        servers = list(FALLBACK)
    return ResolvConf(
        tuple(servers),
        opts.search or host.search,
        opts.options or host.options,
    )


def read_host_resolv_conf(path: Path) -> str:
    """The host file's text; a missing file reads as empty (giving the fallback servers)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


@dataclass(frozen=True)
class Hosts:
    """The container's /etc/hosts entries."""

    hostname: str
    name: str
    address: str | None = None
    host_gateway: str | None = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    def render(self) -> str:
        """The file's text: localhost, --add-host entries, the host alias, then ourselves."""
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{ip}\t{host}" for host, ip in self.extra]
        if self.host_gateway:
            lines.append(f"{self.host_gateway}\thost.containers.internal host.docker.internal")
        names = " ".join(dict.fromkeys([self.hostname, self.name]))
        lines.append(f"{self.address or '127.0.1.1'}\t{names}")
        return "\n".join(lines) + "\n"
