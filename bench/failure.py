"""Failure propagation through the library: from ``kill -9`` of one member (the container's
process, the network helper, the holder) to the whole group being cleaned, per helper."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio

import carrier
from bench._common import Context, interleave

MEMBERS = ("container", "helper", "holder")
HELPERS = ("pasta", "slirp4netns")
# Exits on SIGTERM at once, so the grace period measures Carrier, not a sleep's lifetime.
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]


def _member_pid(root: Path, c: carrier.Container, member: str) -> int:
    cdir = root / "containers" / c.id
    if member == "container":
        return int((cdir / "container.pid").read_text())
    if member == "helper":
        return int((cdir / "network.pid").read_text().split()[0])
    assert c.holder_pid is not None
    return c.holder_pid


async def _once(root: Path, image: str, helper: str, member: str) -> float:
    with anyio.fail_after(60):
        async with carrier.run(image, COMMAND, root=root, network=helper, stop_timeout=5) as c:
            pid = _member_pid(root, c, member)
            t = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            await c.wait()
            return (time.perf_counter() - t) * 1000


def run(ctx: Context) -> dict[str, Any]:
    """Each (helper, member) as one variant, interleaved; milliseconds to a cleaned group."""
    image = ctx.images["small"]

    def variant(helper: str, member: str) -> Any:
        return lambda: anyio.run(_once, ctx.root, image, helper, member)

    variants = {f"{h} {m}": variant(h, m) for h in HELPERS for m in MEMBERS}
    out = interleave(variants, ctx.runs)
    return {"variants": {k: (v if isinstance(v, str) else v["wall"]) for k, v in out.items()}}

