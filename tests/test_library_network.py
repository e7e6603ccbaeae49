"""Named networks from the library (``carrier.network``, ``carrier.run(network=...,
network_aliases=...)``), rootless, with the real parts, for pasta and slirp4netns alike.

Traffic goes only to addresses on the network's bridge, inside namespaces the test made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, cast

import anyio
import pytest
from conftest import Carrier
from test_typing import mypy

import carrier
import carrier.sync

pytestmark = pytest.mark.anyio

SERVER = ["nc", "-ll", "-p", "5432", "-e", "echo", "db"]  # answers every connection with "db"
ASK = "for target in {}; do echo | nc -w 5 $target 5432; done"


Helper = Literal["pasta", "slirp4netns"]


@pytest.fixture(params=["pasta", "slirp4netns"])
def helper(request: pytest.FixtureRequest) -> Helper:
    """Every test that starts a network runs with each helper."""
    return cast(Helper, request.param)


@pytest.fixture
def anyio_backend() -> str:
    """asyncio here; the trio run is its own test."""
    return "asyncio"


def networks(cli: Carrier) -> list[str]:
    """The names ``carrier network ls`` shows."""
    return cli("network", "ls", "-q").out.split()


async def ask(image: str, network: carrier.Network | carrier.NetworkName, *targets: str,
              root: Path | None = None) -> list[str]:
    """What a fresh container on *network* is told by the server at each of *targets*."""
    async with carrier.run(image, ["sh", "-c", ASK.format(" ".join(targets))],
                           network=network, root=root, stop_timeout=0.5) as c:
        await c.wait()
    return [line.text async for line in c.logs()]


async def test_containers_find_each_other_by_name_and_alias(cli: Carrier, image: str,
                                                            helper: Helper) -> None:
    """On a network made by the library, a container reaches another by its name and by its
    alias, given the handle or the name; leaving the block removes the network."""
    async with carrier.network(helper=helper, root=cli.root) as net:
        assert net.name.startswith("carrier-")
        assert networks(cli) == [net.name]
        async with carrier.run(image, SERVER, name="db", network=net, root=cli.root,
                               network_aliases=["database"], wait_for=carrier.port(5432),
                               stop_timeout=0.5):
            assert await ask(image, net, "db", "database") == ["db", "db"]
            assert await ask(image, net.name, "db", root=cli.root) == ["db"]
    assert networks(cli) == []


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_and_options(cli: Carrier, image: str) -> None:
    """On trio too, a named, internal network with a given subnet is stored as asked, and its
    containers talk on it."""
    async with carrier.network("backend", internal=True, subnet="10.77.0.0/24",
                               root=cli.root) as net:
        assert (net.name, net.subnet, net.internal) == ("backend", "10.77.0.0/24", True)
        (info,) = json.loads(cli("network", "inspect", "backend").out)
        assert info["internal"] is True
        async with carrier.run(image, SERVER, name="db", network=net,
                               wait_for=carrier.port(5432), stop_timeout=0.5) as c:
            assert (c.name, await ask(image, net, "db")) == ("db", ["db"])
    assert networks(cli) == []


async def test_cancellation_removes_the_network(cli: Carrier, image: str, helper: Helper) -> None:
    """Cancelling the scope around a network with a running container stops the container and
    removes the network before the cancellation propagates."""
    with anyio.CancelScope() as scope:
        async with carrier.network(helper=helper, root=cli.root) as net, \
                carrier.run(image, ["sleep", "600"], network=net, stop_timeout=0.5):
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert networks(cli) == []


async def test_a_kept_container_keeps_the_network(cli: Carrier, image: str) -> None:
    """A stopped container still on the network (remove=False) keeps it, with a ConflictError
    naming the container."""
    async def stay() -> None:
        async with carrier.network("kept", root=cli.root) as net, \
                carrier.run(image, ["true"], name="stays", network=net, remove=False) as c:
            await c.wait()

    with pytest.raises(carrier.ConflictError, match="kept") as e:
        await stay()
    assert "stays" in str(e.value)
    assert networks(cli) == ["kept"]
    assert cli("rm", "stays").code == 0
    assert cli("network", "rm", "kept").code == 0


async def test_bad_network_options_are_refused(cli: Carrier, image: str, tmp_path: Path) -> None:
    """An unknown network, an alias without a named network, a handle from another root and a
    taken name are refused with one line, and nothing is stored."""
    cases: list[tuple[dict[str, object], str]] = [
        ({"network": "nope"}, "invalid network='nope': no such network"),
        ({"network_aliases": ["x"]}, "--network-alias"),
        ({"network_aliases": "x"}, "network_aliases"),
    ]
    for options, message in cases:
        with pytest.raises(carrier.CarrierError, match=message) as e:
            async with carrier.run(image, ["true"], root=cli.root, **options):  # type: ignore[arg-type]
                pass
        assert "\n" not in str(e.value)
    async with carrier.network("mine", root=cli.root) as net:
        with pytest.raises(carrier.CarrierError, match="belongs to the root"):
            async with carrier.run(image, ["true"], network=net, root=tmp_path / "other"):
                pass
        with pytest.raises(carrier.CarrierError, match="already exists"):
            async with carrier.network("mine", root=cli.root):
                pass
    with pytest.raises(carrier.CarrierError, match="helper"):
        async with carrier.network(root=cli.root, helper="pasat"):  # type: ignore[arg-type]
            pass
    assert networks(cli) == []
    assert cli("ps", "-a", "-q").out == ""


def test_sync_facade(cli: Carrier, image: str, helper: Helper) -> None:
    """carrier.sync.network makes a network that carrier.sync.run's containers share."""
    with carrier.sync.network(root=cli.root, helper=helper) as net, \
            carrier.sync.run(image, SERVER, name="db", network=net, network_aliases=["database"],
                             wait_for=carrier.port(5432), stop_timeout=0.5), \
            carrier.sync.run(image, ["sh", "-c", ASK.format("database")], network=net) as c:
        c.wait()
        assert [line.text for line in c.logs()] == ["db"]
    assert networks(cli) == []


PROGRAM = """
import carrier


async def main() -> None:
    async with carrier.network(internal=True) as net:
        async with carrier.run("busybox", ["true"], network=net, network_aliases=["a"]) as c:
            await c.wait()
        async with carrier.run("busybox", ["true"], network=net.name) as c:
            await c.wait()
        async with carrier.run("busybox", ["true"], network=carrier.NetworkName("other")) as c:
            await c.wait()
        async with carrier.run("busybox", ["true"], network="pasta") as c:
            await c.wait()
"""


def test_options_type_check(tmp_path: Path) -> None:
    """mypy --strict accepts the network API (a handle, its name, a NetworkName, a mode) and
    flags a misspelt option of carrier.network and of carrier.run, and a misspelt mode."""
    good = mypy(PROGRAM, tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = mypy(PROGRAM.replace("internal=", "internl=").replace("network_aliases=",
                                                                 "network_alias=")
               .replace('network="pasta"', 'network="pasat"'), tmp_path)
    assert bad.returncode == 1
    assert 'Unexpected keyword argument "internl"' in bad.stdout
    assert 'Unexpected keyword argument "network_alias"' in bad.stdout
    assert 'Argument "network" to "run" has incompatible type' in bad.stdout
