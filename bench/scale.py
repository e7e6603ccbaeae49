"""Scale through the library from one process: N networked (pasta) containers started at once.
Time until all run with the network ready, the supervisor's RSS per container, the memory of
everything the group needs (supervisor, holders, helpers, runc; RSS and PSS), the supervisor's
CPU while idle, and the time to stop them all."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio

import carrier
from bench._common import Context, free_memory_mib, one_line


def _status_kib(pid: int | str, key: str = "VmRSS:") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(top: int) -> dict[int, str]:
    """pid -> command name of every descendant of *top*."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append((int(entry.name), comm))
    found: dict[int, str] = {}
    todo = [top]
    while todo:
        for pid, comm in children.get(todo.pop(), []):
            found[pid] = comm
            todo.append(pid)
    return found


def _memory(workload: str) -> dict[str, Any]:
    """RSS and PSS (KiB) of this process plus its descendants, by command name; the containers'
    own workload (*workload*) is counted apart."""
    by_comm: dict[str, list[int]] = {}
    for pid, comm in _descendants(os.getpid()).items():
        row = by_comm.setdefault(comm, [0, 0, 0])
        row[0] += 1
        row[1] += _status_kib(pid)
        row[2] += _pss_kib(pid)
    me = os.getpid()
    rss = _status_kib(me) + sum(r[1] for c, r in by_comm.items() if c != workload)
    pss = _pss_kib(me) + sum(r[2] for c, r in by_comm.items() if c != workload)
    return {"total_rss_kib": rss, "total_pss_kib": pss,
            "by_process": {c: {"count": r[0], "rss_kib": r[1], "pss_kib": r[2]} for c, r in by_comm.items()}}


def _cpu_seconds() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scale(root: Path, image: str, n: int, idle: float) -> dict[str, Any]:
    """Start *n* at once, measure, stop them all."""
    rss0, t0 = _status_kib(os.getpid()), time.perf_counter()
    ready = anyio.Event()
    up: list[carrier.Container] = []
    result: dict[str, Any] = {"n": n}

    async def one() -> None:
        async with carrier.run(image, ["sleep", "1000"], root=root, network="pasta",
                               stop_timeout=0.5, wait_timeout=120) as c:
            up.append(c)
            if len(up) == n:
                ready.set()
            await anyio.sleep_forever()

    with anyio.fail_after(600):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(one)
            await ready.wait()
            result["all_ready_s"] = time.perf_counter() - t0
            result["supervisor_rss_per_container_kib"] = (_status_kib(os.getpid()) - rss0) / n
            mem = _memory("sleep")
            result["total_rss_per_container_kib"] = mem["total_rss_kib"] / n
            result["total_pss_per_container_kib"] = mem["total_pss_kib"] / n
            result["memory"] = mem
            cpu, w0 = _cpu_seconds(), time.perf_counter()
            await anyio.sleep(idle)  # the measurement window itself
            result["idle_cpu_percent"] = 100 * (_cpu_seconds() - cpu) / (time.perf_counter() - w0)
            t1 = time.perf_counter()
            tg.cancel_scope.cancel()
        result["stop_all_s"] = time.perf_counter() - t1
    return result


def run(ctx: Context) -> dict[str, Any]:
    """Each size once (a size is its own sample of N containers); sizes beyond memory skipped."""
    sizes, idle = ([1, 3], 2.0) if ctx.quick else ([1, 10, 50, 100, 200], 30.0)
    out: dict[str, Any] = {"idle_window_s": idle, "sizes": []}
    for n in sizes:
        if n > 100 and free_memory_mib() < 8 * 1024:
            out["sizes"].append({"n": n, "skipped": f"only {free_memory_mib()} MiB free"})
            continue
        try:
            out["sizes"].append(anyio.run(scale, ctx.root, ctx.images["small"], n, idle))
        except Exception as e:
            out["sizes"].append({"n": n, "error": one_line(e)})
    return out
