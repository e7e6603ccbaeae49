"""``carrier stats --no-stream``: what each running container uses, in ``podman stats``'s columns.

Read from the host's /proc over the container's processes (its PID namespace), not from cgroups
(rootless on a hybrid cgroup v1 host has none of its own): CPU % over one sampling window,
memory as the sum of the processes' PSS (each shared page counted once) against the host's
memory, PIDs, network bytes of the container's interfaces and block I/O bytes.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import Parameter

from .._util._errors import CarrierError
from ._common import open_root
from ._format import size
from ._top import go_duration

if TYPE_CHECKING:
    from .._state._records import Record

WINDOW = 0.5
"""Seconds over which ``--no-stream`` measures CPU % (the measurement itself, not a wait)."""
INTERVAL = 1.0
"""Seconds between two measurements of a stream (each measuring CPU % over the last one)."""


@dataclass
class _Usage:
    record: Record
    cpu_ticks: int = 0
    start_ticks: int = 0
    mem: int = 0
    pids: int = 0
    net: tuple[int, int] = (0, 0)
    block: tuple[int, int] = (0, 0)


def stats(
    *containers: str,
    no_stream: Annotated[bool, Parameter(name="--no-stream")] = False,
    format: Annotated[Literal["table", "json"], Parameter(name="--format")] = "table",
) -> int:
    """Show the CPU, memory, PIDs and I/O of running containers (all of them without NAME).

    Parameters
    ----------
    containers: str
        Container names, ids or id prefixes (default: every running container).
    no_stream: bool
        Print one measurement and exit (else one a second, until Ctrl-C or until none of
        the containers runs any more).
    format: str
        ``table`` (Podman's columns) or ``json`` (Podman's fields, plus raw numbers).
    """
    from .._runtime._exec import running_record
    from .._state._records import Containers, Status

    root = open_root()
    found = Containers(root)
    if containers:
        records = []
        for ref in containers:
            try:
                records.append(running_record(root, ref))
            except CarrierError as e:
                raise CarrierError(f"can only get stats of running containers: {e}") from None
    else:
        records = [r for r in found.all()
                   if r.status is Status.RUNNING and found.supervisor_alive(r.id)]
    from .._sandbox._procs import pid_namespace

    namespaces = {r.id: pid_namespace(r.container_pid) if r.container_pid else None
                  for r in records}
    before = {r.id: _measure(r, namespaces[r.id]) for r in records}
    window = WINDOW if no_stream else INTERVAL
    while True:  # bounded by the containers' lives: it ends when none of them runs any more
        started = time.monotonic()
        time.sleep(window)  # CPU % is a rate: it needs two measurements some time apart
        seconds = time.monotonic() - started
        after = [u for u in (_measure(r, namespaces[r.id]) for r in records) if u.pids or no_stream]
        _show([_row(before[u.record.id], u, seconds) for u in after], format,
              clear=not no_stream and sys.stdout.isatty())
        if no_stream:
            return 0
        if not after:
            return 0
        sys.stdout.flush()
        before = {u.record.id: u for u in after}
        records = [u.record for u in after]


def _show(rows: list[dict[str, Any]], format: str, *, clear: bool) -> None:
    """Print one measurement: a JSON array, or Podman's table (after clearing a terminal)."""
    if clear:
        print("\033[2J\033[H", end="")
    if format == "json":
        print(json.dumps(rows, indent=1))
        return
    head = ("ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET IO", "BLOCK IO", "PIDS",
            "CPU TIME", "AVG CPU %")
    keys = ("id", "name", "cpu_percent", "mem_usage", "mem", "net_io", "block_io", "pids",
            "cpu_time", "avg_cpu")
    table = [head, *(tuple(str(row[k]) for k in keys) for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _measure(record: Record, namespace: str | None) -> _Usage:
    """One reading of *record*'s processes (none once its first process has left *namespace*,
    the one it had when the command began: a PID reused meanwhile is not the container)."""
    from .._sandbox import _procs

    usage = _Usage(record)
    if record.container_pid is None or namespace is None:
        return usage
    procs = _procs.members(record.container_pid, namespace)
    usage.pids = len(procs)
    usage.start_ticks = procs[0].start_ticks if procs else 0
    reads = writes = 0
    for p in procs:
        usage.cpu_ticks += p.cpu_ticks
        pss = _procs.pss(p.pid)
        usage.mem += p.rss if pss is None else pss
        r, w = _procs.block_io(p.pid)
        reads, writes = reads + r, writes + w
    usage.block = (reads, writes)
    usage.net = _procs.net_dev(record.container_pid) if procs else (0, 0)
    return usage


def _row(before: _Usage, now: _Usage, seconds: float) -> dict[str, Any]:
    """Podman's JSON fields for one container, and the numbers behind them under ``raw``."""
    from .._sandbox import _procs

    tick = _procs.CLK_TCK
    cpu = max(now.cpu_ticks - before.cpu_ticks, 0) / tick / seconds * 100
    alive = max(_procs.uptime_ticks() - now.start_ticks, 1) / tick
    limit = _mem_total()
    return {
        "id": now.record.id[:12],
        "name": now.record.name,
        "cpu_time": go_duration(now.cpu_ticks / tick),
        "cpu_percent": f"{cpu:.2f}%",
        "avg_cpu": f"{now.cpu_ticks / tick / alive * 100:.2f}%",
        "mem_usage": f"{size(now.mem)} / {size(limit)}",
        "mem": f"{now.mem / limit * 100:.2f}%",
        "net_io": f"{size(now.net[0])} / {size(now.net[1])}",
        "block_io": f"{size(now.block[0])} / {size(now.block[1])}",
        "pids": str(now.pids),
        "raw": {"cpu_percent": cpu, "cpu_seconds": now.cpu_ticks / tick, "mem_pss": now.mem,
                "mem_limit": limit, "net_input": now.net[0], "net_output": now.net[1],
                "block_input": now.block[0], "block_output": now.block[1], "pids": now.pids},
    }


def _mem_total() -> int:
    """The host's memory in bytes: the limit of a container with no memory limit, as Podman."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 1
