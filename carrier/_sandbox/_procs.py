"""The processes of a container, read from the host's /proc: every process whose PID namespace is
the one of the container's first process. Nothing runs inside the container (its image may have
no ``ps``), and the fork server or a plain supervisor makes no difference.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Proc:
    """One process, as the host sees it, with its PID inside the container's namespace."""

    pid: int
    """The host PID."""
    ns_pid: int
    """The PID inside the container's PID namespace."""
    ppid: int
    """The host PID of the parent."""
    uid: int
    """The effective uid on the host."""
    gid: int
    """The effective gid on the host."""
    state: str
    tty_nr: int
    nice: int
    cpu_ticks: int
    """User plus system time, in clock ticks."""
    start_ticks: int
    """When it started, in clock ticks after boot."""
    vsz: int
    rss: int
    """Resident set size, bytes."""
    comm: str
    args: list[str]


def pid_namespace(pid: int) -> str | None:
    """The PID namespace of *pid* (``pid:[4026532]``), or None when it is gone or not ours."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def members(init_pid: int, namespace: str | None = None) -> list[Proc]:
    """The live processes in *init_pid*'s PID namespace, by namespace PID (*init_pid* first).
    Empty when *init_pid* is gone, or when it is no longer in *namespace* (its PID reused)."""
    ns = pid_namespace(init_pid)
    if ns is None or namespace not in (None, ns):
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or pid_namespace(int(entry)) != ns:
            continue  # another user's processes cannot be read: they are not the container's
        proc = read(int(entry))
        if proc is not None:
            found.append(proc)
    return sorted(found, key=lambda p: p.ns_pid)


def read(pid: int) -> Proc | None:
    """What /proc says about *pid*; None if it ended meanwhile (or is a zombie's leftovers)."""
    base = Path(f"/proc/{pid}")
    try:
        stat = (base / "stat").read_bytes()
        status = (base / "status").read_text()
        cmdline = (base / "cmdline").read_bytes()
    except OSError:
        return None
    comm = stat[stat.index(b"(") + 1: stat.rindex(b")")].decode(errors="replace")
    f = stat[stat.rindex(b")") + 2:].split()  # f[0] is field 3 (state)
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    nspids = fields.get("NSpid", str(pid)).split()
    return Proc(
        pid=pid, ns_pid=int(nspids[-1]), ppid=int(f[1]),
        uid=int(fields["Uid"].split()[1]), gid=int(fields["Gid"].split()[1]),
        state=f[0].decode(), tty_nr=int(f[4]), nice=int(f[16]),
        cpu_ticks=int(f[11]) + int(f[12]), start_ticks=int(f[19]),
        vsz=int(f[20]), rss=int(f[21]) * PAGE, comm=comm,
        args=[a.decode(errors="replace") for a in cmdline.split(b"\0")[:-1]],
    )


def pss(pid: int) -> int | None:
    """The proportional set size of *pid* in bytes (shared pages divided among their users,
    so a container's sum counts each page once); None if it cannot be read."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return None


def block_io(pid: int) -> tuple[int, int]:
    """Bytes *pid* read from and wrote to storage (``/proc/PID/io``); zeros if unreadable."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            key, _, value = line.partition(":")
            values[key] = int(value)
    return values.get("read_bytes", 0), values.get("write_bytes", 0)


def to_inside(host_id: int, map_file: Path) -> int:
    """*host_id* as the container's user namespace sees it (``uid_map``/``gid_map`` of one of
    its processes); 65534 (the overflow id) when it is not mapped."""
    try:
        lines = map_file.read_text().splitlines()
    except OSError:
        return host_id
    for line in lines:
        inside, outside, count = (int(x) for x in line.split())
        if outside <= host_id < outside + count:
            return inside + host_id - outside
    return 65534


def uptime_ticks() -> float:
    """Clock ticks since boot, as the start times in /proc/PID/stat count them."""
    return float(Path("/proc/uptime").read_text().split()[0]) * CLK_TCK


def net_dev(pid: int) -> tuple[int, int]:
    """Bytes received and sent on the network interfaces (all but ``lo``: pasta's eth0,
    slirp4netns's tap0) of *pid*'s network namespace."""
    rx = tx = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]:
            name, _, data = line.partition(":")
            if name.strip() == "lo":
                continue
            cols = data.split()
            rx += int(cols[0])
            tx += int(cols[8])
    return rx, tx
