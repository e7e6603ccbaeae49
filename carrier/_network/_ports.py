"""Published ports, spelled as Docker spells them: ``[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]``."""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from dataclasses import asdict, dataclass
from typing import Any

from .._util._errors import CarrierError

_SPEC = re.compile(
    r"^(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(?P<host>\d+(?:-\d+)?):(?P<ctr>\d+(?:-\d+)?)"
    r"(?:/(?P<proto>tcp|udp))?$"
)


class PortInUseError(CarrierError):
    """A host port to publish on is taken."""


@dataclass(frozen=True)
class PortMapping:
    """One published port: host address and port to the container's port."""

    host_ip: str
    host_port: int
    container_port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        return f"{ip}:{self.host_port}->{self.container_port}/{self.proto}"

    def to_json(self) -> dict[str, Any]:
        """As stored in the container's record."""
        return asdict(self)


def _range(text: str, what: str, spec: str) -> list[int]:
    lo, _, hi = text.partition("-")
    first, last = int(lo), int(hi or lo)
    if what == "host" and text == "0":
        return [0]  # any free port, chosen at start
    if not (1 <= first <= last <= 65535):
        raise CarrierError(f"invalid port mapping {spec!r}: bad {what} port range {text!r}")
    return list(range(first, last + 1))


def parse_port(spec: str) -> list[PortMapping]:
    """Parse one ``-p`` value into its mappings (a range gives one per port)."""
    m = _SPEC.match(spec.strip())
    if m is None:
        raise CarrierError(
            f"invalid port mapping {spec!r}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"
        )
    ip = (m["ip"] or "0.0.0.0").strip("[]")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise CarrierError(f"invalid port mapping {spec!r}: bad host address {ip!r}") from None
    host = _range(m["host"], "host", spec)
    ctr = _range(m["ctr"], "container", spec)
    if len(host) != len(ctr):
        raise CarrierError(f"invalid port mapping {spec!r}: the ranges differ in length")
    return [PortMapping(ip, h, c, m["proto"] or "tcp") for h, c in zip(host, ctr, strict=True)]


def parse_ports(specs: list[str]) -> list[PortMapping]:
    """Parse every ``-p`` value; the same host port twice is refused."""
    mappings = [pm for spec in specs for pm in parse_port(spec)]
    seen: set[tuple[str, int, str]] = set()
    for pm in mappings:
        key = (pm.host_ip, pm.host_port, pm.proto)
        if pm.host_port == 0:
            continue
        if key in seen:
            raise CarrierError(f"host port {pm.host_ip}:{pm.host_port}/{pm.proto} is published twice")
        seen.add(key)
    return mappings


def check_addresses(mappings: list[PortMapping]) -> None:
    """Fail with a clear message if a host address to publish on is not one of this host's
    (binding there would fail later with a confusing "already in use")."""
    seen: set[str] = set()
    for pm in mappings:
        if pm.host_ip in seen or pm.host_ip in ("0.0.0.0", "::"):
            continue
        seen.add(pm.host_ip)
        family = socket.AF_INET6 if ":" in pm.host_ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.bind((pm.host_ip, 0))
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:
                    raise CarrierError(f"cannot publish {pm}: {pm.host_ip} is not an address of "
                                       "this host") from None
                raise



def host_socket(mapping: PortMapping) -> socket.socket:
    """A socket on *mapping*'s host address and port, bound (and listening, for TCP), for
    Carrier's forwarder and relay. Every address (no HOST_IP) means IPv4 and IPv6 alike: one
    dual-stack socket where the host has IPv6, as Docker and Podman listen. A taken port is a
    :class:`PortInUseError` with a one-line message."""
    tcp = mapping.proto == "tcp"
    try:
        if mapping.host_ip == "0.0.0.0" and socket.has_dualstack_ipv6():
            try:
                return _bound(socket.AF_INET6, "::", mapping.host_port, tcp=tcp, dual=True)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise
                # IPv6 exists but cannot be bound here: IPv4 alone.
        family = socket.AF_INET6 if ":" in mapping.host_ip else socket.AF_INET
        return _bound(family, mapping.host_ip, mapping.host_port, tcp=tcp)
    except OSError as e:
        raise PortInUseError(
            f"cannot publish {mapping}: host port {mapping.host_ip}:{mapping.host_port}/"
            f"{mapping.proto} is already in use ({e.strerror})"
        ) from None


def _bound(family: int, address: str, port: int, *, tcp: bool, dual: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        if dual:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        if tcp:  # a restart may find the last run's connections in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if tcp:
            sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return sock
