"""DNS from inside containers, with pasta and slirp4netns, in the topologies real hosts have.

scripts/sandbox builds the world: /etc/resolv.conf is a file of the sandbox's private mount
namespace (pasta and Carrier both read it), and a resolver on 192.0.2.53 sits in a second network
namespace behind the uplink (it answers *.world.carrier.test with 198.51.100.53; nothing routes
further). Each test writes the host's resolv.conf for its scenario (and restores it), starts its
own servers on the sandbox's loopback where the scenario has them, and resolves test-only names
with busybox nslookup inside the container. 192.0.2.99 is an address where no resolver answers.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Carrier

HELPERS = ["pasta", "slirp4netns"]
FORWARDER = {"pasta": "169.254.1.1", "slirp4netns": "10.0.2.3"}
NAME = "probe.world.carrier.test"
WORLD = "198.51.100.53"  # the world resolver's answer (scripts/sandbox)
LOOPBACK = {"127.0.0.1": "10.53.0.1", "127.0.0.53": "10.53.0.53"}  # server -> its answer
RESOLV_CONF = Path("/etc/resolv.conf")


@pytest.fixture(params=HELPERS)
def helper(request: pytest.FixtureRequest) -> str:
    """Every DNS test runs with each helper."""
    return str(request.param)


@pytest.fixture
def host_resolv() -> Iterator[Callable[[str], None]]:
    """Sets the host's /etc/resolv.conf (the sandbox's bind mount, rewritten in place) for one
    test, and restores it afterwards."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    if str(RESOLV_CONF) not in mounts or not os.access(RESOLV_CONF, os.W_OK):
        pytest.fail("/etc/resolv.conf is not the sandbox's: run the suite with ./scripts/test "
                    "(or inside ./scripts/sandbox)")
    original = RESOLV_CONF.read_text()

    def write(text: str) -> None:
        with RESOLV_CONF.open("w") as f:  # in place: it is a mount point
            f.write(text)

    yield write
    write(original)


@pytest.fixture
def loopback_dns() -> Iterator[dict[str, str]]:
    """DNS servers on the sandbox's 127.0.0.1:53 (a local dnsmasq's place) and 127.0.0.53:53
    (systemd-resolved's stub), each answering every A query with its own address."""
    from dnslib import QTYPE, RR, A
    from dnslib.server import BaseResolver, DNSServer

    class Resolver(BaseResolver):  # type: ignore[misc]
        def __init__(self, answer: str) -> None:
            self.answer = answer

        def resolve(self, request: object, handler: object) -> object:
            reply = request.reply()  # type: ignore[attr-defined]
            if request.q.qtype == QTYPE.A:  # type: ignore[attr-defined]
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.answer), ttl=5))  # type: ignore[attr-defined]
            return reply

    servers = []
    try:
        for address, answer in LOOPBACK.items():
            servers.append(DNSServer(Resolver(answer), address=address, port=53))
            servers[-1].start_thread()
    except OSError as e:
        for server in servers:
            server.stop()
        pytest.fail(f"cannot serve DNS on the loopback's port 53 ({e}); run the suite with "
                    "./scripts/test")
    yield LOOPBACK
    for server in servers:
        server.stop()


def resolve(carrier: Carrier, image: str, helper: str, *flags: str) -> str:
    """The address NAME resolves to inside a container (nslookup's answer); fails if none."""
    res = carrier("run", "--rm", "--network", helper, *flags, image, "nslookup", "-type=a", NAME)
    answers = res.out.split(f"Name:\t{NAME}\nAddress: ")[1:]
    assert answers, f"{NAME} did not resolve: {res.out}{res.err}"
    assert res.code == 0, res.err
    return answers[0].split()[0]


def host_mapped_address(helper: str) -> str:
    """The address inside that the helper maps to the host's 127.0.0.1 (pasta: the gateway)."""
    if helper == "slirp4netns":
        return "10.0.2.2"
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return str(ipr.get_default_routes(family=socket.AF_INET)[0].get("gateway"))


class TestHostResolvers:
    @pytest.mark.parametrize(
        ("host_file", "answer"),
        [
            ("nameserver 192.0.2.53\n", WORLD),
            ("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", LOOPBACK["127.0.0.53"]),
            ("nameserver 127.0.0.1\n", LOOPBACK["127.0.0.1"]),
            ("nameserver 192.0.2.53\nnameserver 127.0.0.53\n", WORLD),
            ("nameserver 127.0.0.53\nnameserver 192.0.2.53\n", LOOPBACK["127.0.0.53"]),
            ("nameserver 192.0.2.99\nnameserver 192.0.2.53\n", WORLD),
            ("nameserver 127.0.0.54\nnameserver 192.0.2.53\n", WORLD),
        ],
        ids=["routable", "stub", "loopback-dnsmasq", "routable-then-stub", "stub-then-routable",
             "first-down", "stub-down"],
    )
    def test_resolves(self, carrier: Carrier, image: str, helper: str, host_resolv: Callable[[str], None],
                      loopback_dns: dict[str, str], host_file: str, answer: str) -> None:
        """A name resolves inside through the host's resolvers: the first one answers, or the
        next when the first is down."""
        host_resolv(host_file)
        assert resolve(carrier, image, helper) == answer


class TestUserServers:
    @pytest.mark.parametrize("host_file", ["nameserver 192.0.2.53\n", "nameserver 127.0.0.53\n"])
    def test_dns_routable(self, carrier: Carrier, image: str, helper: str,
                          host_resolv: Callable[[str], None], host_file: str) -> None:
        """--dns naming a routable resolver works, also when it is the host's first nameserver."""
        host_resolv(host_file)
        assert resolve(carrier, image, helper, "--dns", "192.0.2.53") == WORLD

    @pytest.mark.parametrize("host_file", ["nameserver 127.0.0.1\n", "nameserver 127.0.0.53\n",
                                           "nameserver 192.0.2.53\nnameserver 127.0.0.1\n"])
    def test_dns_on_host_loopback(self, carrier: Carrier, image: str, helper: str,
                                  host_resolv: Callable[[str], None], loopback_dns: dict[str, str],
                                  host_file: str) -> None:
        """--host-loopback --dns <host mapping> reaches the server on the host's 127.0.0.1,
        whatever nameservers the host's resolv.conf names."""
        host_resolv(host_file)
        flags = ["--host-loopback", "--dns", host_mapped_address(helper)]
        assert resolve(carrier, image, helper, *flags) == LOOPBACK["127.0.0.1"]

    def test_dns_forwarder_by_name(self, carrier: Carrier, image: str, helper: str,
                                   host_resolv: Callable[[str], None]) -> None:
        """--dns may name the helper's forwarder itself, next to other servers."""
        host_resolv("nameserver 192.0.2.53\n")
        assert resolve(carrier, image, helper, "--dns", FORWARDER[helper], "--dns", "192.0.2.99") == WORLD


class TestResolvConf:
    """The container's file (contents only: nothing is sent to the servers named here)."""

    @pytest.mark.parametrize(
        ("host_file", "expected"),
        [
            ("nameserver 192.0.2.53\nsearch example.test\noptions ndots:2\n",
             "nameserver {forwarder}\nsearch example.test\noptions ndots:2\n"),
            ("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
             "nameserver {forwarder}\nsearch .\noptions edns0 trust-ad\n"),
            ("nameserver 192.0.2.99\nnameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver ::1\n",
             "nameserver {forwarder}\nnameserver 192.0.2.53\n"),
            ("nameserver 2001:db8::35\nnameserver 127.0.0.53\n",
             "nameserver 2001:db8::35\nnameserver {forwarder}\n"),
            ("", "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"),
        ],
        ids=["routable", "stub-only", "several", "ipv6-first", "empty"],
    )
    def test_rules(self, carrier: Carrier, image: str, helper: str,
                   host_resolv: Callable[[str], None], host_file: str, expected: str) -> None:
        """The forwarder takes the place of the host's first IPv4 nameserver; other loopback
        ones are left out, other routable ones kept, and search and options carried over."""
        host_resolv(host_file)
        res = carrier("run", "--rm", "--network", helper, image, "cat", "/etc/resolv.conf")
        assert res.out == expected.format(forwarder=FORWARDER[helper]), res.err

    def test_overrides(self, carrier: Carrier, image: str, helper: str) -> None:
        """--dns, --dns-search and --dns-option replace the host's values."""
        res = carrier("run", "--rm", "--network", helper, "--dns", "192.0.2.10", "--dns",
                      "192.0.2.11", "--dns-search", "a.test", "--dns-option", "ndots:3",
                      image, "cat", "/etc/resolv.conf")
        assert res.out == ("nameserver 192.0.2.10\nnameserver 192.0.2.11\nsearch a.test\n"
                           "options ndots:3\n")

    @pytest.mark.parametrize("dns", [[], ["--dns", "192.0.2.53"]], ids=["host", "user"])
    def test_info_names_the_forwarder(self, carrier: Carrier, image: str, helper: str,
                                      host_resolv: Callable[[str], None], dns: list[str]) -> None:
        """carrier info says where the forwarder sends queries, and that none is used with --dns."""
        host_resolv("nameserver 192.0.2.53\n")
        assert carrier("run", "-d", "--name", "d", "--network", helper, *dns, image,
                       "sleep", "100").code == 0
        info = carrier.record("d")["network"]["dns"]  # type: ignore[index]
        assert info["forwarder"] == (None if dns else f"{FORWARDER[helper]} -> 192.0.2.53")
        assert carrier("rm", "-f", "d").code == 0
