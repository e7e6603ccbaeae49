"""A tree's default network and fixed addresses, with the real parts, rootless, for pasta and
slirp4netns: ``carrier down`` removes ``<tree>_default`` as Compose does (also after its
supervisor was killed), unless a container outside the tree uses it; ``run --ip`` takes an
address of a named network's subnet, and a bad or taken one is refused up front.

Traffic goes only to addresses inside the networks the tests made (the bridge).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import wait_event, wait_pidfd
from test_networks import ask_tcp, run_state, tcp_echo_server

HELPERS = ["pasta", "slirp4netns"]
TREE = ('name = "shop"\n'
        '[containers.db]\nimage = "busybox"\nstop_timeout = 1\n'
        'command = ["nc", "-ll", "-p", "5432", "-e", "echo", "db-here"]\n')


@pytest.fixture(params=HELPERS)
def tree(request: pytest.FixtureRequest, carrier: Carrier, image: str, tmp_path: Path) -> Iterator[Path]:
    """The tree ``shop`` (one server, ``db``), its network made up front on one helper with the
    label a tree puts on its own network; afterwards its container record is removed."""
    assert carrier("network", "create", "shop_default", "--label", "carrier.tree=shop", "-o",
                   f"helper={request.param}").code == 0
    path = tmp_path / "shop.toml"
    path.write_text(TREE)
    yield path
    carrier("rm", "-f", "shop-db")


def up(carrier: Carrier, path: Path) -> dict[str, object]:
    """Start the tree detached, wait until its server runs; the network's run state."""
    res = carrier("up", "-d", str(path))
    assert res.code == 0, res.err
    wait_event(carrier, "started", 1)
    state = run_state(carrier, "shop_default")
    assert state is not None
    return state


def test_down_removes_default_network(carrier: Carrier, tree: Path) -> None:
    """`carrier down` removes the tree's default network once its group has ended."""
    state = up(carrier, tree)
    res = carrier("down", str(tree))
    assert res.code == 0, res.err
    wait_pidfd(int(state["supervisor_pid"]))  # type: ignore[call-overload]
    assert not (carrier.root / "networks" / "shop_default").exists()
    assert carrier("network", "inspect", "shop_default").code == 125


def test_down_keeps_network_used_elsewhere(carrier: Carrier, tree: Path) -> None:
    """`carrier down` keeps the tree's network while a container outside the tree is on it."""
    up(carrier, tree)
    assert carrier("run", "-d", "--name", "other", "--network", "shop_default", "busybox",
                   "sleep", "600").code == 0
    assert carrier("down", str(tree)).code == 0
    assert carrier("network", "inspect", "shop_default").code == 0
    assert carrier("rm", "-f", "other").code == 0


def test_down_reconciles_killed_supervisor(carrier: Carrier, tree: Path) -> None:
    """After the tree's supervisor is SIGKILLed, down removes the network, whose group has ended
    (down says the supervisor is gone once it was reaped; a zombie still counts as stopping)."""
    state = up(carrier, tree)
    pid = json.loads((carrier.root / "trees" / "shop.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_pidfd(pid)
    res = carrier("down", str(tree))
    assert res.code == 0 or (res.code == 125 and "supervisor is gone" in res.err), res
    wait_pidfd(int(state["supervisor_pid"]))  # type: ignore[call-overload]
    assert not (carrier.root / "networks" / "shop_default").exists()


@pytest.fixture(params=HELPERS)
def net(carrier: Carrier, image: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A network ``n`` on 10.89.7.0/24 on one helper; its containers are removed afterwards."""
    assert carrier("network", "create", "n", "--subnet", "10.89.7.0/24", "-o",
                   f"helper={request.param}").code == 0
    yield "n"
    names = carrier("ps", "-aq").out.split()
    if names:
        carrier("rm", "-f", *names)


def test_fixed_address(carrier: Carrier, net: str) -> None:
    """`run --ip` gives the container that address, where others reach it."""
    assert carrier("run", "-d", "--name", "a", "--network", net, "--ip", "10.89.7.50", "busybox",
                   *tcp_echo_server("a")).code == 0
    address = str(carrier.record("a")["network"]["address"])  # type: ignore[index]
    assert ipaddress.IPv4Interface(address).ip == ipaddress.IPv4Address("10.89.7.50")
    code, out = ask_tcp(carrier, net, "10.89.7.50")
    assert (code, out) == (0, "a")


@pytest.mark.parametrize(("args", "why"), [
    (["--network", "n", "--ip", "10.89.7.50"], "taken by a"),
    (["--network", "n", "--ip", "10.89.8.5"], "not a container address"),
    (["--network", "n", "--ip", "10.89.7.255"], "not a container address"),
    (["--network", "n", "--ip", "10.89.7.1"], "gateway"),
    (["--network", "n", "--ip", "nope"], "expected an IPv4 address"),
    (["--network", "auto", "--ip", "10.89.7.9"], "named network"),
])
def test_bad_ip_refused(carrier: Carrier, net: str, args: list[str], why: str) -> None:
    """A bad or taken --ip is one line and exit 125, and no container is stored."""
    assert carrier("run", "-d", "--name", "a", "--network", net, "--ip", "10.89.7.50", "busybox",
                   "sleep", "600").code == 0
    res = carrier("run", "-d", "--name", "b", *args, "busybox", "true")
    assert res.code == 125, res
    assert res.err.count("\n") == 1, res.err
    assert why in res.err, res.err
    assert len(carrier("ps", "-aq").out.split()) == 1
