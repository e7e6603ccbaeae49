"""Many networked containers from one process: all run, all stop, nothing is left, and the
supervisor's open file descriptors return to their baseline."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from conftest import Carrier

import carrier

pytestmark = pytest.mark.anyio
COUNT = 50


@pytest.fixture
def anyio_backend() -> str:
    """One event loop is enough here; the library tests cover both."""
    return "asyncio"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_fifty_networked_containers_from_the_library(cli: Carrier, image: str) -> None:
    """50 containers with pasta, started and stopped from one process."""
    baseline = _open_fds()
    running = anyio.Event()
    started: list[carrier.Container] = []

    async def one(i: int) -> None:
        async with carrier.run(image, ["sleep", "1000"], root=cli.root, name=f"load{i}",
                               network="pasta", stop_timeout=0.2) as c:
            started.append(c)
            if len(started) == COUNT:
                running.set()
            await running.wait()
            assert cli.record(f"load{i}")["status"] == "running"

    with anyio.fail_after(300):  # a guard, not a wait
        async with anyio.create_task_group() as tg:
            for i in range(COUNT):
                tg.start_soon(one, i)
    assert len(started) == COUNT
    assert all(c.outcome is not None for c in started)
    assert not any((cli.root / "containers").iterdir())
    assert _open_fds() <= baseline


def test_tree_of_fifty(cli: Carrier, image: str, tmp_path: Path) -> None:
    """carrier up with 50 networked containers: all up, all down, nothing left."""
    lines = ['name = "many"']
    for i in range(COUNT):
        lines += [f"[containers.c{i}]", 'image = "busybox"', 'command = ["sleep", "1000"]',
                  'network = "slirp4netns"', "stop_timeout = 0.2"]
    path = tmp_path / "many.toml"
    path.write_text("\n".join(lines) + "\n")
    assert cli("up", "-d", str(path), timeout=300).code == 0
    assert cli("ps").out.count("Up ") == COUNT
    assert cli("down", str(path), timeout=300).code == 0
    assert cli("ps").out.count("Up ") == 0
    assert cli("ps", "-a").out.count("Exited (137)") == COUNT
