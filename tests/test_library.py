"""The library: run and wait for containers from asyncio and trio programs."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from conftest import Carrier, user_processes

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
    assert c.outcome.exit_code == 137  # sleep as PID 1 ignores SIGTERM


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
        async with carrier.run("nope", ["true"], root=cli.root):
            pass
