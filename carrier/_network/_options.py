"""Checking a container's network options before anything starts: one line naming the option
for anything that would be wrong, or would inject lines into resolv.conf or hosts."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Collection

from .._state._records import Spec
from .._util._durations import check_count
from .._util._errors import CarrierError
from ._choice import choose
from ._ports import PortMapping, check_addresses, parse_ports

MODES = ("auto", "pasta", "slirp4netns", "none", "host")
MTU_MIN, MTU_MAX = 1280, 65520  # IPv6's minimum; the helpers' maximum (and default)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_HOST_ALIAS = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_DNS_OPTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?::[0-9]+)?")


def check_hostname(name: str, option: str = "--hostname") -> str:
    """A hostname as RFC 1123 and the kernel allow it (labels of letters, digits and '-', at
    most 63 characters in all)."""
    if len(name) > 63 or not _HOSTNAME.fullmatch(name):
        raise CarrierError(f"invalid {option} {name!r}: use letters, digits, '-' and '.' "
                           "(at most 63 characters)")
    return name


HOST_GATEWAY = "host-gateway"
"""``--add-host NAME:host-gateway``: the address that reaches the host (the helper's mapping)."""


def parse_add_host(item: str) -> tuple[str, str]:
    """``NAME:IP`` (IPv6 allowed: ``NAME:fd00::1``) or ``NAME:host-gateway`` for ``--add-host``."""
    name, sep, ip = item.partition(":")
    try:
        if ip != HOST_GATEWAY:
            ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise CarrierError(f"invalid --add-host {item!r}: expected NAME:IP") from None
    if not sep or not name:
        raise CarrierError(f"invalid --add-host {item!r}: expected NAME:IP")
    if not _HOST_ALIAS.fullmatch(name):
        raise CarrierError(f"invalid --add-host {item!r}: the name may hold letters, digits, "
                           "'_', '-' and '.' only")
    return name, ip.strip("[]")


def validate(spec: Spec, networks: Collection[str] = ()) -> list[PortMapping]:
    """Check the network options of *spec* before anything starts (*networks*: the names of the
    existing named networks); return the port mappings."""
    named = spec.network not in MODES
    if named and spec.network in networks:
        return _validate_named(spec)
    if spec.network.startswith("container:"):
        return _validate_joiner(spec)
    if spec.network_aliases:
        raise CarrierError("--network-alias names a container on a named network: give --network NAME")
    if named:
        raise CarrierError(
            f"invalid network mode {spec.network!r}: use auto, pasta, slirp4netns, none or host"
        )
    if spec.network == "host" and os.geteuid() != 0:
        raise CarrierError("--elevated (host network) needs root: run as root, or drop --elevated")
    if spec.hostname:
        check_hostname(spec.hostname)
    ports = parse_ports(spec.ports)
    if ports and spec.network in ("none", "host"):
        raise CarrierError(f"-p publishes through a network helper: not with --network {spec.network}")
    check_addresses(ports)
    if spec.mtu is not None:
        if spec.network in ("none", "host"):
            raise CarrierError(f"--mtu sets the helper's interface: not with --network {spec.network}")
        check_count("--mtu", spec.mtu, minimum=MTU_MIN, maximum=MTU_MAX)
    _check_dns(spec)
    choose(spec.network)  # a missing helper fails now, with the install command
    return ports


def _validate_joiner(spec: Spec) -> list[PortMapping]:
    """``--network container:NAME``: the other container's network, as it is."""
    if not spec.network.split(":", 1)[1]:
        raise CarrierError("invalid --network container:NAME: the container's name is missing")
    if spec.hostname:
        check_hostname(spec.hostname)
    for value, option in ((spec.ports, "-p"), (spec.mtu, "--mtu"), (spec.dns, "--dns"),
                          (spec.dns_search, "--dns-search"), (spec.dns_option, "--dns-option"),
                          (spec.add_host, "--add-host"), (spec.host_loopback, "--host-loopback"),
                          (spec.network_aliases, "--network-alias")):
        if value:
            raise CarrierError(f"conflicting options: {option} and --network {spec.network} "
                               "(the network is that container's)")
    return []


def _check_dns(spec: Spec) -> None:
    """--add-host, --dns, --dns-search and --dns-option."""
    for item in spec.add_host:
        if parse_add_host(item)[1] != HOST_GATEWAY:
            continue
        if spec.network in ("none", "host"):
            raise CarrierError(f"invalid --add-host {item!r}: host-gateway is the network "
                               f"helper's address for the host: not with --network {spec.network}")
        if not spec.host_loopback:
            raise CarrierError(f"invalid --add-host {item!r}: host-gateway needs --host-loopback "
                               "(the helper maps the host only then)")
    for server in spec.dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise CarrierError(f"invalid --dns {server!r}: expected an IP address") from None
    for domain in spec.dns_search:
        if domain != "." and (len(domain) > 253 or not _HOSTNAME.fullmatch(domain.rstrip("."))):
            raise CarrierError(f"invalid --dns-search {domain!r}: expected a domain name")
    for option in spec.dns_option:
        if not _DNS_OPTION.fullmatch(option):
            raise CarrierError(f"invalid --dns-option {option!r}: expected NAME or NAME:NUMBER "
                               "(ndots:2, rotate, edns0)")


def _validate_named(spec: Spec) -> list[PortMapping]:
    """The options of a container on a named network."""
    if spec.hostname:
        check_hostname(spec.hostname)
    for alias in spec.network_aliases:
        check_hostname(alias, "--network-alias")
    ports = parse_ports(spec.ports)
    check_addresses(ports)
    if spec.mtu is not None:
        check_count("--mtu", spec.mtu, minimum=MTU_MIN, maximum=MTU_MAX)
    _check_dns(spec)
    return ports
