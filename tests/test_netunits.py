"""Unit tests for network parsing and the file rules, with no processes started."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from carrier._network import _choice
from carrier._network._dns import DnsOptions, Forwarder, Hosts, container_resolv_conf, parse_resolv_conf
from carrier._network._helper import HelperConfig
from carrier._network._options import parse_add_host
from carrier._network._pasta import Pasta, first_nameserver
from carrier._network._ports import PortMapping, parse_port, parse_ports
from carrier._network._slirp4netns import Slirp4netns
from carrier._util._errors import CarrierError


class TestPorts:
    @pytest.mark.parametrize(
        ("spec", "expected"),
        [
            ("8080:80", [PortMapping("0.0.0.0", 8080, 80)]),
            ("127.0.0.1:8080:80/udp", [PortMapping("127.0.0.1", 8080, 80, "udp")]),
            ("[::1]:8080:80", [PortMapping("::1", 8080, 80)]),
            ("8000-8001:90-91", [PortMapping("0.0.0.0", 8000, 90), PortMapping("0.0.0.0", 8001, 91)]),
            ("127.0.0.1:0:80", [PortMapping("127.0.0.1", 0, 80)]),  # any free port, at start
        ],
    )
    def test_docker_spellings(self, spec: str, expected: list[PortMapping]) -> None:
        """-p takes Docker's spellings, ranges included."""
        assert parse_port(spec) == expected

    @pytest.mark.parametrize("bad", ["80", "a:80", "1:2:3:4", "0-2:80-82", "70000:80", "1-3:1-2",
                                     "host:80:80", "80:80/sctp"])
    def test_invalid(self, bad: str) -> None:
        """Malformed mappings are refused with the mapping named."""
        with pytest.raises(CarrierError, match="invalid port mapping"):
            parse_port(bad)

    def test_duplicate_host_port(self) -> None:
        """The same host port twice is refused."""
        with pytest.raises(CarrierError, match="published twice"):
            parse_ports(["8080:80", "8080:81"])


class TestResolvConf:
    def test_parse(self) -> None:
        """Comments are ignored; the last search line wins; options accumulate."""
        conf = parse_resolv_conf("# x\nnameserver 1.1.1.1 # c\nsearch a\nsearch b c\noptions x\noptions y\n")
        assert conf.nameservers == ("1.1.1.1",)
        assert conf.search == ("b", "c")
        assert conf.options == ("x", "y")

    @pytest.mark.parametrize(
        ("text", "upstream", "expected"),
        [
            ("nameserver 127.0.0.53\nnameserver 192.0.2.9\nnameserver ::1\n", "127.0.0.53",
             ("F", "192.0.2.9")),
            ("nameserver 192.0.2.9\nnameserver 127.0.0.53\nnameserver 192.0.2.8\n", "192.0.2.9",
             ("F", "192.0.2.8")),
            ("nameserver 192.0.2.8\nnameserver 192.0.2.9\nnameserver 192.0.2.9\n", "192.0.2.9",
             ("192.0.2.8", "F")),
            ("nameserver 2001:db8::1\nnameserver 127.0.0.1\n", "192.0.2.7", ("2001:db8::1",)),
        ],
        ids=["stub-first", "routable-first", "upstream-twice", "upstream-absent"],
    )
    def test_forwarder_replaces_its_upstream(self, text: str, upstream: str,
                                             expected: tuple[str, ...]) -> None:
        """The forwarder takes its upstream's place, once; other loopback servers are left out."""
        conf = container_resolv_conf(text, Forwarder("F", upstream), DnsOptions())
        assert conf.nameservers == expected

    def test_no_forwarder_no_servers_falls_back(self) -> None:
        """Without a forwarder, a stub-only host gives the public fallback."""
        conf = container_resolv_conf("nameserver 127.0.0.53\n", None, DnsOptions())
        assert conf.nameservers == ("8.8.8.8", "8.8.4.4")

    def test_overrides(self) -> None:
        """--dns replaces all servers; --dns-search and --dns-option replace theirs."""
        conf = container_resolv_conf("nameserver 192.0.2.1\nsearch a\noptions x\n", None,
                                     DnsOptions(("192.0.2.8",), ("b",), ("y",)))
        assert conf.render() == "nameserver 192.0.2.8\nsearch b\noptions y\n"


class TestDnsForwarder:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("nameserver 192.0.2.9\n", "192.0.2.9"),
            ("# c\nsearch x\nnameserver 2001:db8::1\nnameserver 127.0.0.53\n", "127.0.0.53"),
            ("nameserver\t192.0.2.9\nnameserver 192.0.2.8", "192.0.2.8"),
            ("nameserver 192.0.2.9 \nnameserver 192.0.2.8\n", "192.0.2.8"),
            ("nameserver 192.0.2.9 # home\nnameserver 192.0.2.8\n", "192.0.2.8"),
            (" nameserver 192.0.2.9\nnameserver  192.0.2.8\n", "192.0.2.8"),
            ("nameserver 192.0.2.9\r\nnameserver 192.0.2.8\n", "192.0.2.8"),
            ("nameserver 192.0.2.9%eth0\n", "192.0.2.9"),
            ("nameserver fe80::1%eth0\n", None),
            ("", None),
        ],
        ids=["plain", "first-ipv4", "tab", "trailing-space", "comment", "leading-space", "crlf",
             "scope", "ipv6-only", "empty"],
    )
    def test_pasta_reads_resolv_conf_as_pasta_does(self, text: str, expected: str | None) -> None:
        """pasta's first nameserver is the first "nameserver " line whose last word is an
        IPv4 address (its 2023-03 parser; lines glibc accepts may be skipped)."""
        assert first_nameserver(text) == expected

    def test_slirp4netns_reads_it_as_glibc_does(self) -> None:
        """slirp4netns (libslirp) takes the first IPv4 nameserver, comments and tabs allowed."""
        text = "nameserver 192.0.2.9 # home\nnameserver 192.0.2.8\n"
        assert Slirp4netns.forwarder(text) == Forwarder("10.0.2.3", "192.0.2.9")
        assert Pasta.forwarder(text) == Forwarder("169.254.1.1", "192.0.2.8")
        assert Pasta.forwarder("nameserver 2001:db8::1\n") is None

    @pytest.mark.parametrize(("forward", "expected"),
                             [("169.254.1.1", ["--dns-forward", "169.254.1.1"]), (None, ["-D", "none"])])
    def test_pasta_forwards_only_when_used(self, forward: str | None, expected: list[str]) -> None:
        """pasta gets --dns-forward only when the container uses it, else -D none (no DNS
        rewriting at all)."""
        argv = Pasta().argv(SimpleNamespace(pid=4242), HelperConfig(dns_forward=forward))  # type: ignore[arg-type]
        i = argv.index(expected[0])
        assert argv[i:i + 2] == expected
        assert ("--dns-forward" in argv) == (forward is not None)


class TestHosts:
    def test_render(self) -> None:
        """localhost first, then --add-host, the host alias, then the container itself."""
        text = Hosts("web", "web", "10.0.2.100", "10.0.2.2", (("db", "192.0.2.5"),)).render()
        assert text.splitlines() == [
            "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
            "192.0.2.5\tdb", "10.0.2.2\thost.containers.internal host.docker.internal",
            "10.0.2.100\tweb",
        ]

    @pytest.mark.parametrize(("item", "expected"),
                             [("db:192.0.2.5", ("db", "192.0.2.5")), ("v6:fd00::1", ("v6", "fd00::1"))])
    def test_add_host(self, item: str, expected: tuple[str, str]) -> None:
        """NAME:IP, IPv6 included."""
        assert parse_add_host(item) == expected

    @pytest.mark.parametrize("bad", ["db", "db:notanip", ":1.2.3.4"])
    def test_add_host_invalid(self, bad: str) -> None:
        """Malformed --add-host values are refused."""
        with pytest.raises(CarrierError, match="add-host"):
            parse_add_host(bad)


class TestHelperChoice:
    @pytest.mark.parametrize(("os_release", "command"), [
        ('ID=debian\n', "apt install passt slirp4netns"),
        ('ID=ubuntu\nID_LIKE=debian\n', "apt install passt slirp4netns"),
        ('ID="fedora"\n', "dnf install passt slirp4netns"),
        ('ID=rocky\nID_LIKE="rhel centos fedora"\n', "dnf install passt slirp4netns"),
        ('ID=arch\n', "pacman -S passt slirp4netns"),
    ])
    def test_install_hint(self, tmp_path: Path, os_release: str, command: str) -> None:
        """The install command comes from /etc/os-release."""
        f = tmp_path / "os-release"
        f.write_text(os_release)
        assert _choice.install_hint(f) == command

    def test_auto_prefers_pasta_then_slirp(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """auto takes pasta when present, else slirp4netns."""
        monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
        assert _choice.choose("auto").name == "pasta"  # type: ignore[union-attr]
        monkeypatch.setattr(shutil, "which",
                            lambda name: None if name == "pasta" else f"/usr/bin/{name}")
        assert _choice.choose("auto").name == "slirp4netns"  # type: ignore[union-attr]

    def test_none_installed_names_the_install_command(self, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
        """With neither helper, the error says how to install them on this distribution."""
        monkeypatch.setattr(shutil, "which", lambda name: None)
        f = tmp_path / "os-release"
        f.write_text("ID=fedora\n")
        with pytest.raises(CarrierError, match="dnf install passt slirp4netns"):
            _choice.choose("auto", os_release=f)
        with pytest.raises(CarrierError, match="pasta is not installed"):
            _choice.choose("pasta", os_release=f)

    def test_modes_without_helper(self) -> None:
        """none and host need no helper."""
        assert _choice.choose("none") is None
        assert _choice.choose("host") is None
