"""The library: run and wait for containers from asyncio and trio programs."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from conftest import Carrier, user_processes
from registry import HOST, free_port, run_registry

import carrier

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every library test runs on both event loops."""
    return str(request.param)


async def test_run_and_wait(cli: Carrier, image: str, tmp_path: Path) -> None:
    """A container's output and exit code come back to the async program."""
    out = tmp_path / "out"
    with out.open("wb") as f:
        async with carrier.run(image, ["sh", "-c", "echo hi; exit 3"], root=cli.root,
                               stdio=carrier.Stdio(stdout=f)) as c:
            outcome = await c.wait()
    assert outcome == carrier.Outcome(3, carrier.Reason.EXITED)
    assert out.read_text() == "hi\n"
    assert not any((cli.root / "containers").iterdir()), "removed by default"


async def test_leaving_the_block_stops_the_container(cli: Carrier, image: str) -> None:
    """Leaving the block stops a running container gracefully and cleans everything."""
    async with carrier.run(image, ["sleep", "100"], root=cli.root, stop_timeout=0.5) as c:
        assert c.outcome is None
        holder = cli.record(c.name)["holder_pid"]
        assert isinstance(holder, int)
        assert Path(f"/proc/{holder}").exists()  # noqa: ASYNC240 - a single stat in a test
    assert c.outcome is not None
    assert c.outcome.reason is carrier.Reason.STOP_REQUESTED
    assert c.outcome.exit_code == 137  # sleep as PID 1 never gets SIGTERM: killed


async def test_leaving_the_block_does_not_wait_for_a_deaf_init(cli: Carrier, image: str) -> None:
    """A PID 1 without a SIGTERM handler (sleep) never receives the stop's SIGTERM, so leaving
    the block kills it at once rather than after stop_timeout (ten minutes here: past the
    test's own timeout)."""
    async with carrier.run(image, ["sleep", "1000"], root=cli.root, stop_timeout=600) as c:
        pass
    assert c.outcome is not None
    assert (c.outcome.reason, c.outcome.exit_code) == (carrier.Reason.STOP_REQUESTED, 137)


async def test_cancellation_cleans_up(cli: Carrier, image: str) -> None:
    """Cancelling the enclosing scope stops and cleans the container before propagating."""
    before = set(user_processes())
    with anyio.CancelScope() as scope:
        async with carrier.run(image, ["sleep", "100"], root=cli.root, stop_timeout=0.5):
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert set(user_processes()) <= before


async def test_many_at_once(cli: Carrier, image: str, tmp_path: Path) -> None:
    """Several containers from one process, each with its own outcome."""
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        async with carrier.run(image, ["sh", "-c", f"exit {i}"], root=cli.root) as c:
            results[i] = (await c.wait()).exit_code

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(one, i)
    assert results == {i: i for i in range(5)}


async def test_bad_image_raises(cli: Carrier, image: str) -> None:
    """A missing image raises NotFoundError before anything starts."""
    with pytest.raises(carrier.NotFoundError):
        async with carrier.run("nope", ["true"], root=cli.root, pull="never"):
            pass


@pytest.fixture
async def web(cli: Carrier, image: str) -> AsyncIterator[carrier.Container]:
    """A test-suite fixture: a web server that is really ready, on a free host port."""
    script = ("mkdir -p /www && echo hello-lib > /www/index.html && echo serving && "
              "exec httpd -f -p 80 -h /www")
    async with carrier.run(image, ["sh", "-c", script], root=cli.root, ports={80: "127.0.0.1:0"},
                           wait_for=carrier.all_of(carrier.log_line("^serving$"),
                                                   carrier.port(80))) as c:
        yield c


async def test_fixture_gives_a_ready_server(web: carrier.Container) -> None:
    """Once the fixture yields, the published port serves at once: no retry needed."""
    host, port = web.published(80)
    assert port != 0
    stream = await anyio.connect_tcp(host, port)
    async with stream:
        await stream.send(b"GET /index.html HTTP/1.0\r\n\r\n")
        data = b""
        with anyio.fail_after(10):  # a guard, not a wait
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    break
    assert data.endswith(b"hello-lib\n")
    assert b"serving" in [line.data async for line in web.logs()]


async def test_exec_from_the_library(web: carrier.Container) -> None:
    """exec returns the status, the stdout and the stderr of a command run inside, apart."""
    result = await web.exec(["sh", "-c", "cat /www/index.html; echo oops >&2; exit 2"])
    assert result == carrier.ExecResult(2, b"hello-lib\n", b"oops\n")


async def test_exec_options(web: carrier.Container) -> None:
    """exec takes env (a mapping), workdir, user and bytes for the command's stdin."""
    result = await web.exec(["sh", "-c", "cat; echo \"$X\"; pwd; id -u"], env={"X": "a b"},
                            workdir="/www", user="1000", stdin=b"fed\n")
    assert result == carrier.ExecResult(0, b"fed\na b\n/www\n1000\n", b"")
    assert (await web.exec(["cat"])).stdout == b"", "no stdin: the command reads nothing"


async def test_exec_timeout_kills_the_command(web: carrier.Container) -> None:
    """An exec past its timeout raises ExecTimeoutError (a TimeoutError), and the command it
    started is gone from the container, not only the runtime's exec."""
    with pytest.raises(TimeoutError, match="not done within") as info:
        await web.exec(["sleep", "1234"], timeout=0.5)
    assert isinstance(info.value, carrier.ExecTimeoutError)
    assert b"sleep 1234" not in (await web.exec(["ps", "-o", "args"])).stdout


async def _get(host: str, port: int, path: str) -> bytes:
    """The raw answer of an HTTP/1.0 GET to *host*:*port*."""
    stream = await anyio.connect_tcp(host, port)
    async with stream:
        await stream.send(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        with anyio.fail_after(10):  # a guard, not a wait
            while True:
                try:
                    data += await stream.receive()
                except anyio.EndOfStream:
                    return data


@pytest.mark.parametrize("network", ["pasta", "slirp4netns"])
async def test_ports_keyed_by_container_port(cli: Carrier, image: str,
                                             network: Literal["pasta", "slirp4netns"]) -> None:
    """ports= maps each container port to a host port (0: any free one) or an address and
    port; published() names what was picked; the old host-keyed mapping is refused."""
    script = ("mkdir -p /www && echo p80 > /www/a && httpd -p 80 -h /www && "
              "httpd -p 81 -h /www && exec sleep 1000")
    async with carrier.run(image, ["sh", "-c", script], root=cli.root, network=network,
                           ports={80: 0, 81: "127.0.0.1:0"}, stop_timeout=0.2,
                           wait_for=carrier.all_of(carrier.port(80), carrier.port(81))) as c:
        (any_ip, p80), (ip81, p81) = c.published(80), c.published(81)
        assert (any_ip, ip81) == ("0.0.0.0", "127.0.0.1")
        assert 0 not in (p80, p81)
        for port in (p80, p81):
            assert (await _get(HOST, port, "/a")).endswith(b"p80\n")
    with pytest.raises(carrier.CarrierError, match="keys are container ports"):
        async with carrier.run(image, ["true"], root=cli.root, network=network,
                               ports={"127.0.0.1:0": 80}):
            pass


async def test_wait_for_fails_when_the_container_ends(cli: Carrier, image: str) -> None:
    """A condition that can no longer come true fails with a clear error, and nothing leaks."""
    with pytest.raises(carrier.CarrierError, match="ended before it was ready"):
        async with carrier.run(image, ["true"], root=cli.root, network="none",
                               wait_for=carrier.log_line("never")):
            pass


async def test_host_side_probes_and_events(cli: Carrier, image: str) -> None:
    """http() and tcp() probe through the published port; a host-side health check that
    starts failing ends the group; the library streams the same events as the CLI."""
    script = ("mkdir -p /www && echo ok > /www/index.html && httpd -p 80 -h /www && "
              "trap 'kill %1; exit 0' TERM; sleep 1000 & wait")
    seen: list[str] = []
    async with carrier.run(image, ["sh", "-c", script], root=cli.root, name="probed",
                           ports={80: "127.0.0.1:0"}, health=carrier.http(80, "/index.html"),
                           health_interval=0.1, health_retries=1, health_on_failure="kill",
                           wait_for=carrier.all_of(carrier.tcp(80), carrier.http(80, "/index.html"))
                           ) as c:
        async with anyio.create_task_group() as tg:

            async def collect() -> None:
                async for event in carrier.events(cli.root):
                    if event.name == "probed":
                        seen.append(event.kind)
                        if event.kind == "healthy":
                            await c.exec(["rm", "/www/index.html"])
                        if event.kind == "cleaned":
                            tg.cancel_scope.cancel()

            tg.start_soon(collect)
        outcome = await c.wait()
    assert outcome.reason is carrier.Reason.UNHEALTHY
    assert seen[:3] == ["created", "network-ready", "started"]
    assert seen.index("healthy") < seen.index("unhealthy") < seen.index("cleaned")


async def test_events_are_typed(cli: Carrier, image: str) -> None:
    """carrier.events() yields frozen, typed event objects whose kind is a Literal and whose
    attributes are fields; a kind this version does not know comes as an UnknownEvent."""
    async with carrier.run(image, ["sh", "-c", "exit 5"], root=cli.root, name="typed",
                           network="none") as c:
        await c.wait()
    with (cli.root / "events.jsonl").open("a") as f:
        f.write('{"id": "x", "name": "typed", "time": 1.5, "type": "teleported", "to": "mars"}\n')
    seen = [e async for e in carrier.events(cli.root, follow=False)]
    assert [type(e) for e in seen] == [carrier.CreatedEvent, carrier.NetworkReadyEvent,
                                       carrier.StartedEvent, carrier.ExitedEvent,
                                       carrier.CleanedEvent, carrier.UnknownEvent]
    created, network, started, exited, cleaned, unknown = seen
    assert {e.name for e in seen} == {"typed"}
    assert {e.id for e in seen[:5]} == {c.id}
    assert (created.kind, created.image) == ("created", image)
    assert (network.kind, network.mode) == ("network-ready", "none")
    assert (started.kind, started.restarts) == ("started", 0)
    assert (exited.kind, exited.exit_code, exited.reason) == ("exited", 5, carrier.Reason.EXITED)
    assert (cleaned.kind, cleaned.exit_code) == ("cleaned", 5)
    assert (unknown.kind, unknown.raw_kind, unknown.attrs, unknown.time) == \
        ("unknown", "teleported", {"to": "mars"}, 1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exited.exit_code = 0  # type: ignore[misc]


async def test_own_errors_come_back_as_raised(cli: Carrier, image: str) -> None:
    """An exception raised in the block comes back as itself (not an exception group), and
    the container is cleaned up all the same."""
    with pytest.raises(KeyError, match="mine"):
        async with carrier.run(image, ["sleep", "100"], root=cli.root, network="none",
                               stop_timeout=0.2):
            raise KeyError("mine")
    assert not any((cli.root / "containers").iterdir())


async def test_env_mapping_and_nothing_dropped(cli: Carrier, image: str, tmp_path: Path) -> None:
    """env= takes a mapping; a value that would be dropped or split is refused, naming env."""
    out = tmp_path / "out"
    with out.open("wb") as f:
        async with carrier.run(image, ["sh", "-c", "echo \"$A|$B\""], root=cli.root,
                               network="none", env={"A": "x=1", "B": "two words"},
                               stdio=carrier.Stdio(stdout=f)) as c:
            assert (await c.wait()).exit_code == 0
    assert out.read_bytes() == b"x=1|two words\n"
    for bad in (["CARRIER_SURELY_UNSET_VAR"], "A=1", {"A=B": "c"}, {"A": 1}):
        with pytest.raises(carrier.CarrierError, match="env"):
            async with carrier.run(image, ["true"], root=cli.root, env=bad):  # type: ignore[arg-type]
                pass
    assert not any((cli.root / "containers").iterdir())


async def test_an_ignored_sigchld_is_refused_in_one_line(cli: Carrier, image: str) -> None:
    """A program that ignores SIGCHLD gets a CarrierError that says so and how to restore it,
    before anything is stored (its children would be reaped at once, their statuses lost:
    "no such process" and a container recorded as exited 125); restored, the same call runs."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        with pytest.raises(carrier.CarrierError, match="SIGCHLD is ignored"):
            async with carrier.run(image, ["true"], root=cli.root, network="none"):
                pass
    finally:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL if previous is None else previous)
    assert not (cli.root / "containers").exists() or not any((cli.root / "containers").iterdir())
    async with carrier.run(image, ["sh", "-c", "exit 4"], root=cli.root, network="none") as c:
        assert (await c.wait()).exit_code == 4


async def test_wrong_option_values_name_the_option(cli: Carrier, image: str) -> None:
    """A value outside an option's choices, or a string where a list belongs, fails with a
    CarrierError naming the option before anything is pulled or stored."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"pull": "sometimes"}, "pull"), ({"network": "bogus"}, "network"),
        ({"health_on_failure": "explode"}, "health_on_failure"),
        ({"storage_driver": "zfs"}, "storage_driver"), ({"dns": "127.0.0.1"}, "dns")]
    for options, option in cases:
        with pytest.raises(carrier.CarrierError, match=f"invalid {option}"):
            async with carrier.run("not-stored", ["true"], root=cli.root, **options):
                pass
    with pytest.raises(carrier.CarrierError, match="invalid command"):
        async with carrier.run(image, "true", root=cli.root):  # a str would run "t" "r" "u" "e"
            pass
    assert not any((cli.root / "containers").iterdir())


async def test_unknown_image_in_a_registry(cli: Carrier, tmp_path: Path) -> None:
    """An image its registry does not know raises ImageNotFoundError (a NotFoundError); an
    unreachable registry raises PullError."""
    with run_registry(tmp_path / "registry") as reg, \
            pytest.raises(carrier.ImageNotFoundError, match="manifest unknown"):
        async with carrier.run(f"{reg.host}/test/none:latest", ["true"], root=cli.root):
            pass
    with pytest.raises(carrier.PullError, match="cannot reach"):
        async with carrier.run(f"{HOST}:{free_port()}/test/none:latest", ["true"], root=cli.root):
            pass
    assert not any((cli.root / "containers").iterdir())


async def test_name_in_use(cli: Carrier, image: str) -> None:
    """A second container with a taken name raises NameInUseError (a ConflictError)."""
    async with carrier.run(image, ["sleep", "100"], root=cli.root, name="taken", network="none",
                           stop_timeout=0.2):
        with pytest.raises(carrier.NameInUseError, match="taken"):
            async with carrier.run(image, ["true"], root=cli.root, name="taken"):
                pass
        assert isinstance(carrier.NameInUseError("x"), carrier.ConflictError)


async def test_readiness_timeout(cli: Carrier, image: str) -> None:
    """A condition that does not hold in time raises ReadyTimeoutError, also a TimeoutError."""
    with pytest.raises(TimeoutError, match="not ready within") as info:
        async with carrier.run(image, ["sleep", "100"], root=cli.root, network="none",
                               stop_timeout=0.2, wait_for=carrier.log_line("never"),
                               wait_timeout=0.3):
            pass
    assert isinstance(info.value, carrier.ReadyTimeoutError)
    assert not any((cli.root / "containers").iterdir())


async def test_exited_before_ready(cli: Carrier, image: str) -> None:
    """A container that ends before it is ready raises ExitedBeforeReadyError with its
    Outcome and the last lines of its output."""
    script = "for i in $(seq 1 30); do echo line $i; done; echo boom; exit 3"
    with pytest.raises(carrier.ExitedBeforeReadyError, match="boom") as info:
        async with carrier.run(image, ["sh", "-c", script], root=cli.root, network="none",
                               wait_for=carrier.log_line("never")):
            pass
    assert info.value.outcome == carrier.Outcome(3, carrier.Reason.EXITED)
    assert info.value.log_tail[-2:] == ("line 30", "boom")
    assert len(info.value.log_tail) == 20


async def test_runtime_failure(cli: Carrier, image: str) -> None:
    """An OCI runtime that fails before the command starts raises RuntimeFailure."""
    with pytest.raises(carrier.RuntimeFailure, match="failed before the command"):
        async with carrier.run(image, ["true"], root=cli.root, network="none",
                               runtime="/bin/false"):
            pass


async def test_storage_options_reach_the_container(cli: Carrier, image: str) -> None:
    """volumes, tmpfs and read_only are typed options of run: a named volume keeps a file for
    the next container, a tmpfs is writable and the root filesystem is not."""
    script = "echo kept > /data/f && touch /scratch/x && ! touch /y 2>/dev/null"
    async with carrier.run(image, ["sh", "-c", script], root=cli.root, network="none",
                           volumes=["vol1:/data"], tmpfs=["/scratch"], read_only=True) as c:
        assert (await c.wait()).exit_code == 0
    async with carrier.run(image, ["grep", "-qx", "kept", "/data/f"], root=cli.root,
                           network="none", volumes=["vol1:/data"]) as c:
        assert (await c.wait()).exit_code == 0
