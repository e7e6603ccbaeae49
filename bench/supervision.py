"""Supervision benchmarks (issues 4 and 7), through the library in one process.

- Failure propagation: from ``kill -9`` of a member (the container, the helper) to the group
  being fully cleaned, per helper: median and p95.
- Scale: N networked containers started at once: time until all run with the network ready,
  the supervisor's RSS per container, its CPU while idle (no polling: about 0), stop time.

Run as an unprivileged user in the test sandbox: ``python -m bench.supervision`` (``--quick``).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

import carrier
from bench._image import make_rootfs_tar


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def propagation(root: Path, helper: str, member: str, runs: int) -> list[float]:
    """Milliseconds from the kill to the cleaned group."""
    times = []
    for _ in range(runs):
        # A command that exits on SIGTERM, so the grace period measures Carrier, not sleep(1).
        command = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]
        async with carrier.run("bench", command, root=root, network=helper) as c:
            if member == "container":
                pid = int((root / "containers" / c.id / "container.pid").read_text())
            else:
                pid = int((root / "containers" / c.id / "network.pid").read_text().split()[0])
            t = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            await c.wait()
            times.append((time.perf_counter() - t) * 1000)
    return times


async def scale(root: Path, n: int, idle: float) -> dict[str, float]:
    """Start *n* at once, measure, stop them all."""
    rss0, t0 = _rss_kib(), time.perf_counter()
    ready = anyio.Event()
    up: list[carrier.Container] = []
    result: dict[str, float] = {}

    async def one(i: int) -> None:
        async with carrier.run("bench", ["sleep", "1000"], root=root, network="pasta",
                               stop_timeout=0.1) as c:
            up.append(c)
            if len(up) == n:
                ready.set()
            await ready.wait()
            await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
        await ready.wait()
        result["all ready (s)"] = time.perf_counter() - t0
        result["RSS per container (KiB)"] = (_rss_kib() - rss0) / n
        cpu = _cpu_seconds()
        await anyio.sleep(idle)  # the measurement window itself
        result["idle CPU (%)"] = 100 * (_cpu_seconds() - cpu) / idle
        t1 = time.perf_counter()
        tg.cancel_scope.cancel()
    result["stop all (s)"] = time.perf_counter() - t1
    return result


async def main(quick: bool, sizes: list[int] | None, idle: float | None) -> None:
    runs, default_sizes, default_idle = (2, [1, 5], 2.0) if quick else (10, [1, 10, 50, 100], 30.0)
    sizes, idle = sizes or default_sizes, idle or default_idle
    with tempfile.TemporaryDirectory(prefix="carrier-bench-") as tmp:
        root = Path(tmp) / "root"
        env = {**os.environ, "CARRIER_ROOT": str(root)}
        tar = make_rootfs_tar(Path(tmp))
        await anyio.run_process([sys.executable, "-m", "carrier", "import", str(tar), "bench"],
                                env=env)
        print(f"failure propagation, kill -9 to cleaned group (ms, n={runs})   median      p95")
        for helper in ("pasta", "slirp4netns"):
            for member in ("container", "helper"):
                t = sorted(await propagation(root, helper, member, runs))
                p95 = t[min(len(t) - 1, round(0.95 * (len(t) - 1)))]
                print(f"  {helper:12} {member:10}{statistics.median(t):37.1f}{p95:9.1f}")
        for n in sizes:
            r = await scale(root, n, idle)
            print(f"scale N={n}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny N, 2 runs (smoke)")
    parser.add_argument("--sizes", type=int, nargs="*", help="scale sizes (default 1 10 50 100)")
    parser.add_argument("--idle", type=float, help="idle CPU window in seconds (default 30)")
    args = parser.parse_args()
    anyio.run(main, args.quick, args.sizes, args.idle)
