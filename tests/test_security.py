"""Security options of run, create and exec: capabilities (--cap-add, --cap-drop,
--privileged), --security-opt no-new-privileges and seccomp, and the default seccomp profile,
proved from inside real rootless containers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Carrier, Result

import carrier as carrier_lib

# Podman 4's default capability set, as bits of CapEff
DEFAULT_CAPS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5,
                "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10,
                "SYS_CHROOT": 18, "SETFCAP": 31}
NET_RAW, SYS_PTRACE = 13, 19


def stored(root: Path) -> list[str]:
    """What the Carrier root holds for containers: their directories and names."""
    return sorted(p.name for d in ("containers", "names") if (root / d).exists()
                  for p in (root / d).iterdir())


def one_line_125(res: Result) -> None:
    """The result is one ``carrier:`` line on stderr and exit code 125."""
    assert res.code == 125, res
    assert len(res.err.splitlines()) == 1, res
    assert res.err.startswith("carrier: "), res


def status(carrier: Carrier, image: str, *options: str) -> dict[str, str]:
    """The fields of /proc/self/status of a container run with *options*."""
    res = carrier("run", "--rm", "--network", "none", *options, image, "cat", "/proc/self/status")
    assert res.code == 0, res.err
    return dict(line.split(":\t", 1) for line in res.out.splitlines() if ":\t" in line)


def bits(mask: str) -> set[int]:
    """The capability numbers set in a CapEff hex mask."""
    value = int(mask, 16)
    return {n for n in range(64) if value >> n & 1}


def all_caps() -> set[int]:
    """Every capability this kernel has."""
    return set(range(int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1))


def probe(carrier: Carrier, image: str, call: str, *options: str) -> str:
    """What ``sysprobe`` prints for *call* in a container run with *options*: ok or an errno."""
    res = carrier("run", "--rm", "--network", "none", *options, image, "sysprobe", call)
    assert res.code in (0, 1), res
    return res.out.strip()


class TestCapabilities:
    def test_default_set_is_podmans(self, carrier: Carrier, image: str) -> None:
        """By default the command has exactly Podman's default capabilities (no NET_RAW, so no
        raw socket), and it has no no-new-privileges flag, as in Podman."""
        fields = status(carrier, image)
        assert bits(fields["CapEff"]) == set(DEFAULT_CAPS.values())
        assert bits(fields["CapBnd"]) == set(DEFAULT_CAPS.values())
        assert fields["NoNewPrivs"] == "0"
        assert probe(carrier, image, "raw") == "EPERM"

    def test_cap_drop_chown(self, carrier: Carrier, image: str) -> None:
        """--cap-drop CHOWN (any spelling) makes chown to another user fail inside; it works
        without it."""
        script = "touch /tmp/f && chown 1:1 /tmp/f && echo changed"
        res = carrier("run", "--rm", "--network", "none", image, "sh", "-c", script)
        assert (res.code, res.out) == (0, "changed\n"), res.err
        for spelling in ("CHOWN", "cap_chown"):
            res = carrier("run", "--rm", "--network", "none", "--cap-drop", spelling, image,
                          "sh", "-c", script)
            assert res.code != 0, res
            assert "changed" not in res.out, res
            assert "Operation not permitted" in res.err, res

    def test_ping_socket_without_net_raw(self, carrier: Carrier, image: str) -> None:
        """Without NET_RAW, root inside still gets an ICMP datagram (ping) socket, as Podman
        sets net.ipv4.ping_group_range to "0 0" in the container's own network namespace."""
        assert probe(carrier, image, "icmp") == "ok"
        res = carrier("run", "--rm", "--network", "none", image, "cat",
                      "/proc/sys/net/ipv4/ping_group_range")
        assert res.out.split() == ["0", "0"], res

    def test_cap_add_net_raw(self, carrier: Carrier, image: str) -> None:
        """--cap-add NET_RAW (or CAP_NET_RAW) gives the command a raw ICMP socket."""
        for spelling in ("NET_RAW", "CAP_NET_RAW", "net_raw"):
            assert probe(carrier, image, "raw", "--cap-add", spelling) == "ok"

    def test_drop_all_then_add(self, carrier: Carrier, image: str) -> None:
        """--cap-drop ALL leaves only what --cap-add names; --cap-add ALL gives every one but
        what --cap-drop names."""
        assert bits(status(carrier, image, "--cap-drop", "ALL")["CapEff"]) == set()
        fields = status(carrier, image, "--cap-drop", "ALL", "--cap-add", "CHOWN")
        assert bits(fields["CapEff"]) == {DEFAULT_CAPS["CHOWN"]}
        fields = status(carrier, image, "--cap-add", "ALL", "--cap-drop", "NET_RAW")
        assert bits(fields["CapEff"]) == all_caps() - {NET_RAW}

    def test_privileged(self, carrier: Carrier, image: str) -> None:
        """--privileged gives every capability, no seccomp filter, unmasked /proc paths and
        the host devices this user can open (here /dev/net/tun)."""
        fields = status(carrier, image, "--privileged")
        assert bits(fields["CapEff"]) == all_caps()
        assert fields["Seccomp"] == "0"
        script = "test -c /dev/net/tun && echo tun; grep -c ' /proc/keys ' /proc/self/mountinfo"
        res = carrier("run", "--rm", "--network", "none", "--privileged", image, "sh", "-c", script)
        assert res.out.split() == ["tun", "0"], res  # nothing mounted over /proc/keys
        res = carrier("run", "--rm", "--network", "none", image, "sh", "-c", script)
        assert res.out.split() == ["1"], res  # no device; /proc/keys masked

    def test_exec_applies_the_containers_caps(self, carrier: Carrier, image: str) -> None:
        """exec runs with the container's capabilities and no-new-privileges."""
        assert carrier("run", "-d", "--name", "c", "--network", "none", "--cap-drop", "CHOWN",
                       "--cap-add", "NET_RAW", "--security-opt", "no-new-privileges",
                       image, "sleep", "1000").code == 0
        res = carrier("exec", "c", "cat", "/proc/self/status")
        fields = dict(line.split(":\t", 1) for line in res.out.splitlines() if ":\t" in line)
        assert bits(fields["CapEff"]) == set(DEFAULT_CAPS.values()) - {0} | {NET_RAW}
        assert fields["NoNewPrivs"] == "1"
        assert carrier("exec", "c", "sysprobe", "raw").out == "ok\n"
        assert carrier("exec", "c", "sysprobe", "kcmp").out == "EPERM\n"  # the same filter
        assert carrier("rm", "-f", "c").code == 0

    def test_bad_capabilities(self, carrier: Carrier, image: str) -> None:
        """An unknown capability name is one line naming it and 125; nothing is stored."""
        for option, value in (("--cap-add", "BOGUS"), ("--cap-drop", "CAP_NOPE"),
                              ("--cap-add", "CAP_ALL"), ("--cap-drop", "")):
            for command in ("run", "create"):
                res = carrier(command, option, value, image, "true")
                one_line_125(res)
                assert f"invalid {option} {value!r}" in res.err
        assert stored(carrier.root) == []


class TestSecurityOpt:
    def test_no_new_privileges(self, carrier: Carrier, image: str) -> None:
        """--security-opt no-new-privileges sets NoNewPrivs for the command."""
        assert status(carrier, image, "--security-opt", "no-new-privileges")["NoNewPrivs"] == "1"
        assert status(carrier, image, "--security-opt",
                      "no-new-privileges=false")["NoNewPrivs"] == "0"

    def test_default_profile_blocks_kcmp(self, carrier: Carrier, image: str) -> None:
        """The default seccomp profile (Podman's) is on: kcmp fails with EPERM inside, works
        with seccomp=unconfined, and works with CAP_SYS_PTRACE (a capability-conditioned
        rule); a syscall the profile does not list fails with ENOSYS."""
        assert status(carrier, image)["Seccomp"] == "2"
        assert probe(carrier, image, "kcmp") == "EPERM"
        assert probe(carrier, image, "kcmp", "--security-opt", "seccomp=unconfined") == "ok"
        assert probe(carrier, image, "kcmp", "--cap-add", "SYS_PTRACE") == "ok"
        assert probe(carrier, image, "add_key") == "ENOSYS"
        assert status(carrier, image, "--security-opt", "seccomp=unconfined")["Seccomp"] == "0"

    def test_profile_file(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """seccomp=PROFILE.json applies the user's profile (Podman's format, arch map and all),
        read when the container is created."""
        profile = tmp_path / "profile.json"
        profile.write_text(json.dumps({
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1}],
        }))
        res = carrier("run", "--rm", "--network", "none", "--security-opt",
                      f"seccomp={profile}", image, "sh", "-c", "mkdir /tmp/d; sysprobe kcmp")
        assert res.code == 0, res
        assert "Operation not permitted" in res.err
        assert res.out == "ok\n"  # only the profile's rules: kcmp is allowed

    def test_missing_default_profile(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """Without the default profile's file, a run is one line and 125 (unless unconfined)."""
        carrier.env["CARRIER_SECCOMP_PROFILE"] = str(tmp_path / "none.json")
        for command in ("run", "create"):
            one_line_125(carrier(command, image, "true"))
        assert stored(carrier.root) == []
        assert probe(carrier, image, "kcmp", "--security-opt", "seccomp=unconfined") == "ok"

    def test_bad_security_opt(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """An unknown --security-opt, or a missing or malformed profile, is one line and 125;
        nothing is stored."""
        broken = tmp_path / "broken.json"
        broken.write_text("{not json")
        listless = tmp_path / "listless.json"
        listless.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": 3}')
        for value, why in (("bogus", "invalid --security-opt"),
                           ("no-new-privileges=maybe", "invalid --security-opt"),
                           ("seccomp=", "invalid --security-opt"),
                           (f"seccomp={tmp_path / 'missing.json'}", "cannot read seccomp profile"),
                           (f"seccomp={broken}", "invalid seccomp profile"),
                           (f"seccomp={listless}", "invalid seccomp profile")):
            for command in ("run", "create"):
                res = carrier(command, "--security-opt", value, image, "true")
                one_line_125(res)
                assert why in res.err
        assert stored(carrier.root) == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_library_security(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """carrier.run takes cap_add, cap_drop, privileged and security_opt as the CLI does; a
    lone string or an unknown capability is refused by name."""
    out = tmp_path / "out"
    with out.open("wb") as f:
        async with carrier_lib.run(image, ["cat", "/proc/self/status"], root=carrier.root,
                                   network="none", cap_drop=["ALL"], cap_add=["KILL"],
                                   security_opt=["no-new-privileges", "seccomp=unconfined"],
                                   stdio=carrier_lib.Stdio(stdout=f)) as c:
            assert (await c.wait()).exit_code == 0
    fields = dict(line.split(":\t", 1) for line in out.read_text().splitlines() if ":\t" in line)
    assert (bits(fields["CapEff"]), fields["NoNewPrivs"], fields["Seccomp"]) == (
        {DEFAULT_CAPS["KILL"]}, "1", "0")
    with pytest.raises(carrier_lib.CarrierError, match="invalid cap_add"):
        async with carrier_lib.run(image, ["true"], root=carrier.root, cap_add="NET_RAW"):
            pass
    with pytest.raises(carrier_lib.CarrierError, match="unknown capability"):
        async with carrier_lib.run(image, ["true"], root=carrier.root, cap_drop=["NOPE"]):
            pass
    with pytest.raises(carrier_lib.CarrierError, match="invalid privileged"):
        async with carrier_lib.run(image, ["true"], root=carrier.root,
                                   privileged="yes"):  # type: ignore[arg-type]
            pass
    assert stored(carrier.root) == []


def test_tree_security_options(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """A tree's container takes cap_add, cap_drop, security_opt and ulimit as run does; an
    unknown capability names the file and the container, and nothing starts."""
    tree = tmp_path / "sec.toml"
    tree.write_text(
        'name = "sec"\n[containers.probe]\nimage = "busybox"\nnetwork = "none"\n'
        'command = ["sh", "-c", "grep -E \'CapEff|NoNewPrivs\' /proc/self/status; ulimit -Hn"]\n'
        'cap_drop = ["ALL"]\ncap_add = ["KILL"]\nsecurity_opt = ["no-new-privileges"]\n'
        'ulimit = ["nofile=77"]\n')
    res = carrier("up", str(tree))
    assert res.code == 0, res.err
    out = carrier("logs", "sec-probe").out.split()
    assert out == ["CapEff:", f"{1 << DEFAULT_CAPS['KILL']:016x}", "NoNewPrivs:", "1", "77"], out
    assert carrier("rm", "sec-probe").code == 0  # a foreground up ends with its container
    tree.write_text('name = "sec"\n[containers.probe]\nimage = "busybox"\ncommand = ["true"]\n'
                    'cap_add = ["BOGUS"]\n')
    res = carrier("up", str(tree))
    one_line_125(res)
    assert f"{tree}: containers.probe: invalid --cap-add 'BOGUS'" in res.err
    assert not any((carrier.root / "containers").iterdir())
