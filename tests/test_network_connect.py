"""``carrier network connect``/``disconnect`` with the real parts, rootless, for pasta and
slirp4netns alike: every live network shares one user namespace, a running container joins a
second network and reaches its members by name, leaves it again, and the network's end ends
it; bad input changes nothing.

Traffic goes only to addresses inside namespaces the test made (the networks' bridges); CI runs
this inside the sandbox network namespace (scripts/sandbox).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Literal

import pytest
from conftest import Carrier
from helpers import alive, wait_pidfd
from test_networks import run_state, tcp_echo_server

import carrier

HELPERS = ["pasta", "slirp4netns"]


@pytest.fixture(params=HELPERS)
def nets(carrier: Carrier, image: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Networks ``n1`` and ``n2`` on one helper; afterwards proves their run state is gone."""
    for name in ("n1", "n2"):
        res = carrier("network", "create", name, "-o", f"helper={request.param}")
        assert res.code == 0, res.err
    yield "n1", "n2"
    for name in ("n1", "n2"):
        state = run_state(carrier, name)
        if state is not None:  # it ends once its last container has left: wait for that
            wait_pidfd(int(state["supervisor_pid"]))  # type: ignore[call-overload]
        d = carrier.root / "networks" / name
        assert not (d / "run.json").exists(), "network run state left behind"
        assert not (d / "members.json").exists(), "network membership left behind"


def sleeper(carrier: Carrier, name: str, network: str) -> None:
    """A detached container *name* on *network* that sleeps."""
    res = carrier("run", "-d", "--name", name, "--network", network, "busybox", "sleep", "600")
    assert res.code == 0, res.err


def holder(carrier: Carrier, network: str) -> int:
    """The PID of *network*'s holder (the network runs)."""
    state = run_state(carrier, network)
    assert state is not None
    return int(str(state["holder_pid"]))


def userns(pid: int) -> str:
    """The user namespace of process *pid*."""
    return os.readlink(f"/proc/{pid}/ns/user")


def ask(carrier: Carrier, container: str, target: str) -> tuple[int, str]:
    """From *container*, connect to *target*:5432; the exit code and the answer."""
    res = carrier("exec", container, "sh", "-c", f"echo | nc -w 3 {target} 5432")
    return res.code, res.out.strip()


def test_live_networks_share_one_user_namespace(carrier: Carrier,
                                                nets: tuple[str, str]) -> None:
    """The holders of two live networks, and the containers on them, are in one user
    namespace."""
    n1, n2 = nets
    sleeper(carrier, "a", n1)
    sleeper(carrier, "b", n2)
    spaces = {userns(holder(carrier, n1)), userns(holder(carrier, n2))}
    spaces |= {userns(int(carrier.record(c)["holder_pid"])) for c in ("a", "b")}  # type: ignore[call-overload]
    assert len(spaces) == 1, spaces
    assert carrier("rm", "-f", "a", "b").code == 0


def test_connect_reach_disconnect(carrier: Carrier, nets: tuple[str, str]) -> None:
    """A container connected to a second network reaches its members by name over TCP
    through an eth1 without a second default route; once disconnected it neither resolves nor
    reaches them, and they no longer list it."""
    n1, n2 = nets
    sleeper(carrier, "a", n1)
    assert carrier("run", "-d", "--name", "b", "--network", n2, "busybox",
                   *tcp_echo_server("b")).code == 0
    assert ask(carrier, "a", "b")[0] != 0
    res = carrier("network", "connect", "--alias", "front", n2, "a")
    assert (res.code, res.out, res.err) == (0, "", "")
    assert ask(carrier, "a", "b") == (0, "b")
    connected = carrier.record("a")["network"]["connected"]  # type: ignore[index]
    assert list(connected) == [n2]
    address = connected[n2]["address"]
    assert connected[n2]["interface"] == "eth1"
    assert address.startswith("10.89.1."), address
    shown = json.loads(carrier("inspect", "a").out)[0]["NetworkSettings"]["Networks"]
    assert sorted(shown) == [n1, n2]
    assert shown[n2]["IPAddress"] == address.split("/")[0]
    assert shown[n2]["Aliases"] == ["a", "front"]
    res = carrier("network", "rm", n2)
    assert res.code == 125
    assert res.err.split("container(s): ")[1].split(" (")[0].split(", ") == ["a", "b"] or \
        res.err.split("container(s): ")[1].split(" (")[0].split(", ") == ["b", "a"], res.err
    routes = carrier("exec", "a", "ip", "route").out
    assert routes.count("default") == 1, routes
    assert routes.startswith("default via 10.89.0.1 dev eth0"), routes
    assert address in carrier("exec", "a", "ip", "-o", "-4", "addr", "show", "eth1").out
    hosts_b = carrier("exec", "b", "cat", "/etc/hosts").out
    assert f"{address.split('/')[0]}\ta front\n" in hosts_b, hosts_b
    sleeper(carrier, "c", n1)  # a later join of the first network keeps the second's section
    hosts_a = carrier("exec", "a", "cat", "/etc/hosts").out
    assert "\tb\n" in hosts_a, hosts_a
    assert "\tc\n" in hosts_a, hosts_a
    assert ask(carrier, "a", "b") == (0, "b")

    res = carrier("network", "disconnect", n2, "a")
    assert (res.code, res.out, res.err) == (0, "", "")
    hosts_a = carrier("exec", "a", "cat", "/etc/hosts").out
    assert "\tb\n" not in hosts_a, hosts_a
    assert "\tc\n" in hosts_a, hosts_a
    assert "\ta" not in carrier("exec", "b", "cat", "/etc/hosts").out
    assert carrier("exec", "a", "ip", "link", "show", "eth1").code != 0
    assert ask(carrier, "a", "b")[0] != 0
    b_address = str(carrier.record("b")["network"]["address"]).split("/")[0]  # type: ignore[index]
    assert ask(carrier, "a", b_address)[0] != 0
    assert carrier.record("a")["network"]["connected"] == {}  # type: ignore[index]
    assert carrier("exec", "c", "sh", "-c", "grep -q '\ta$' /etc/hosts").code == 0
    assert carrier("rm", "-f", "a", "b", "c").code == 0


def test_network_ends_after_last_disconnect(carrier: Carrier, nets: tuple[str, str]) -> None:
    """A connect starts an idle network's group, and the disconnect of its only member ends it;
    connecting again starts a new one."""
    n1, n2 = nets
    sleeper(carrier, "a", n1)
    for _ in range(2):
        assert carrier("network", "connect", n2, "a").code == 0
        state = run_state(carrier, n2)
        assert state is not None
        assert userns(int(state["holder_pid"])) == userns(holder(carrier, n1))  # type: ignore[call-overload]
        assert carrier("network", "disconnect", n2, "a").code == 0
        wait_pidfd(int(state["supervisor_pid"]))  # type: ignore[call-overload]
        assert run_state(carrier, n2) is None
        assert not (carrier.root / "networks" / n2 / "members.json").exists()
    assert carrier("rm", "-f", "a").code == 0


def test_connected_network_killed_ends_container(carrier: Carrier,
                                                 nets: tuple[str, str]) -> None:
    """SIGKILL to a connected network's holder ends the container's group with reason
    network-exited, and its first network's group then ends too."""
    n1, n2 = nets
    sleeper(carrier, "a", n1)
    assert carrier("network", "connect", n2, "a").code == 0
    first = run_state(carrier, n1)
    assert first is not None
    victim = holder(carrier, n2)
    os.kill(victim, signal.SIGKILL)
    assert carrier("wait", "a").out.split() == ["125"]
    assert str(carrier.record("a")["reason"]).startswith(f"network-exited: the network {n2}"), \
        carrier.record("a")["reason"]
    wait_pidfd(victim)
    assert not alive(victim)
    wait_pidfd(int(first["supervisor_pid"]))  # type: ignore[call-overload]
    carrier("network", "ls")  # reconciles a killed network's run state
    assert carrier("rm", "a").code == 0


def test_killed_supervisor_leaves_no_connection(carrier: Carrier, nets: tuple[str, str]) -> None:
    """A connected container whose supervisor is SIGKILLed is reconciled without its
    connection: the network it was connected to can be removed, and the container is kept."""
    n1, n2 = nets
    sleeper(carrier, "a", n1)
    assert carrier("network", "connect", n2, "a").code == 0
    groups = [int(str(state["supervisor_pid"])) for state in map(lambda n: run_state(carrier, n), nets)
              if state is not None]
    supervisor = int(str(carrier.record("a")["supervisor_pid"]))
    os.kill(supervisor, signal.SIGKILL)
    wait_pidfd(supervisor)
    for pid in groups:  # the kernel dropped the membership locks: both networks' groups end
        wait_pidfd(pid)
    assert carrier("ps", "-a", "--format", "{{.Names}} {{.Status}}").out.split()[:2] == ["a", "Exited"]
    assert "connected" not in carrier.record("a")["network"]  # type: ignore[operator]
    res = carrier("network", "rm", n2)
    assert res.code == 0, res.err
    assert carrier("rm", "a").code == 0


def test_bad_input(carrier: Carrier, nets: tuple[str, str]) -> None:
    """Each bad connect or disconnect is one line and exit 125, and changes no record, no
    membership and no interface."""
    n1, n2 = nets
    sleeper(carrier, "a", n1)
    assert carrier("run", "-d", "--name", "own", "busybox", "sleep", "600").code == 0
    assert carrier("create", "--name", "idle", "--network", n1, "busybox", "true").code == 0
    cases = [
        (["connect", "nope", "a"], "no such network: nope"),
        (["connect", n2, "nope"], "nope"),
        (["connect", n2, "own"], "has no named network"),
        (["connect", n2, "idle"], "is not running"),
        (["connect", n1, "a"], "already connected"),
        (["connect", "--ip", "10.89.0.9", n2, "a"], "invalid --ip 10.89.0.9"),
        (["connect", "--ip", "10.89.1.1", n2, "a"], "the gateway"),
        (["connect", "--ip", "nonsense", n2, "a"], "invalid --ip"),
        (["connect", "--alias", "bad_name!", n2, "a"], "--alias"),
        (["disconnect", n2, "a"], "is not connected to network n2"),
        (["disconnect", n1, "a"], "was started on network n1"),
        (["disconnect", "nope", "a"], "no such network: nope"),
        (["disconnect", n1, "own"], "has no named network"),
    ]

    def stored() -> tuple[object, ...]:
        records = [carrier("inspect", name).out for name in ("a", "own", "idle")]
        members = [(carrier.root / "networks" / n / "members.json").read_bytes()
                   if (carrier.root / "networks" / n / "members.json").exists() else None
                   for n in nets]
        links = carrier("exec", "a", "ip", "-o", "link").out
        return (*records, *members, links, carrier("network", "ls", "-q").out)

    before = stored()
    assert run_state(carrier, n2) is None
    for args, needle in cases:
        res = carrier("network", *args)
        assert res.code == 125, (args, res)
        assert res.err.startswith("carrier: "), (args, res.err)
        assert res.err.count("\n") == 1, (args, res.err)
        assert needle in res.err, (args, res.err)
        assert res.out == "", (args, res.out)
    assert stored() == before
    assert run_state(carrier, n2) is None, "a refused connect started no network"
    assert carrier("rm", "-f", "a", "own", "idle").code == 0


def test_sections_do_not_clobber() -> None:
    """Rewriting one network's section of a hosts file keeps the own lines and the other
    networks' sections."""
    from carrier._supervision._netgroup import with_section

    text = "127.0.0.1\tlocalhost\n10.89.0.2\ta\n"
    text = with_section(text, "n1", "10.89.0.2\ta\n10.89.0.3\tc\n")
    text = with_section(text, "n2", "10.89.1.2\ta\n10.89.1.3\tb\n")
    text = with_section(text, "n1", "10.89.0.2\ta\n")
    assert text == ("127.0.0.1\tlocalhost\n10.89.0.2\ta\n"
                    "# carrier network members: n1\n10.89.0.2\ta\n"
                    "# carrier network members: n2\n10.89.1.2\ta\n10.89.1.3\tb\n")
    assert with_section(text, "n2", None) == ("127.0.0.1\tlocalhost\n10.89.0.2\ta\n"
                                              "# carrier network members: n1\n10.89.0.2\ta\n")
    assert with_section("", "n1", "") == "# carrier network members: n1\n"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("helper", HELPERS)
async def test_library_connect(cli: Carrier, image: str,
                               helper: Literal["pasta", "slirp4netns"]) -> None:
    """``Container.connect`` joins a running container to a second network, where it reaches
    a member by name, and ``disconnect`` leaves it again."""
    ask = "echo | nc -w 3 db 5432"
    async with carrier.network(helper=helper, root=cli.root) as n1, \
            carrier.network(helper=helper, root=cli.root) as n2, \
            carrier.run(image, tcp_echo_server("db"), name="db", network=n2, root=cli.root,
                        wait_for=carrier.port(5432), stop_timeout=0.5), \
            carrier.run(image, ["sleep", "600"], name="a", network=n1, root=cli.root,
                        stop_timeout=0.5) as a:
        assert (await a.exec(["sh", "-c", ask])).exit_code != 0
        with pytest.raises(carrier.CarrierError, match="invalid --alias"):
            await a.connect(n2.name, aliases=["bad_name!"])
        await a.connect(n2.name, aliases=["front"])
        result = await a.exec(["sh", "-c", ask])
        assert (result.exit_code, result.stdout) == (0, b"db\n")
        with pytest.raises(carrier.CarrierError, match="already connected"):
            await a.connect(n2.name)
        await a.disconnect(n2.name)
        assert (await a.exec(["sh", "-c", ask])).exit_code != 0
