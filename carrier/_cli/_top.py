"""``carrier top``: the processes of a running container, as ``podman top`` shows them.

They are found from the host (every process in the PID namespace of the container's first
process) and described from /proc, so the image needs no ``ps``. The descriptors are Podman's
(its psgo library's): the AIX ones (``%p``) and the named ones (``pid``); users and groups are
named from the container's own /etc/passwd and /etc/group.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .._util._errors import CarrierError
from ._common import open_root

if TYPE_CHECKING:
    from .._sandbox._procs import Proc

DEFAULT = ("user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args")
"""Podman's default descriptors."""

_AIX = {"%C": "pcpu", "%G": "group", "%P": "ppid", "%U": "user", "%a": "args", "%c": "comm",
        "%g": "rgroup", "%n": "nice", "%p": "pid", "%r": "pgid", "%t": "etime", "%u": "ruser",
        "%x": "time", "%y": "tty", "%z": "vsz"}

_HEADERS = {"args": "COMMAND", "comm": "COMMAND", "etime": "ELAPSED", "group": "GROUP",
            "hgroup": "HGROUP", "hpid": "HPID", "huser": "HUSER", "nice": "NI", "pcpu": "%CPU",
            "pgid": "PGID", "pid": "PID", "ppid": "PPID", "rgroup": "RGROUP", "ruser": "RUSER",
            "state": "STATE", "time": "TIME", "tty": "TTY", "user": "USER", "vsz": "VSZ",
            "rss": "RSS"}


def top(container: str, /, *descriptors: str) -> int:
    """Show the processes of a running container (Podman's descriptors: user, pid, ppid, pcpu,
    etime, tty, time, args, comm, group, nice, vsz, rss, state, hpid, huser, or %p, %u, ...).

    Parameters
    ----------
    container: str
        Container name, id or id prefix.
    descriptors: str
        What to show, one column each (default: user pid ppid pcpu etime tty time args);
        separated by spaces or commas.
    """
    from .._runtime._exec import running_record
    from .._sandbox import _procs
    from .._state._records import Containers
    from .._storage._rootfs import running_view

    wanted = _parse(descriptors)
    root = open_root()
    record = running_record(root, container)
    assert record.container_pid is not None
    procs = _procs.members(record.container_pid)
    if not procs:
        raise CarrierError(f"container {record.name} is not running")
    view = running_view(Containers(root).dir(record.id), record.spec.storage_driver,
                        record.container_pid)
    rows = [tuple(_HEADERS[d] for d in wanted)]
    rows += [tuple(cell(d) for d in wanted) for cell in _describers(procs, view)]
    _print(rows)
    return 0


def _parse(descriptors: tuple[str, ...]) -> list[str]:
    """The named descriptors asked for (Podman's defaults without any); unknown: one line."""
    words = [w for d in descriptors for w in d.replace(",", " ").split()]
    named = []
    for word in words or DEFAULT:
        name = _AIX.get(word, word)
        if name not in _HEADERS:
            raise CarrierError(f"unknown descriptor: {word} (Carrier does not run ps inside; "
                               "see carrier top --help)")
        named.append(name)
    return named


def _describers(procs: list[Proc], view: Path) -> list[Callable[[str], str]]:
    """One function per process, giving the text of each descriptor."""
    from .._sandbox import _procs

    inside = {p.pid: p.ns_pid for p in procs}
    users = _names(view / "etc" / "passwd")
    groups = _names(view / "etc" / "group")
    host_users = _names(Path("/etc/passwd"))
    host_groups = _names(Path("/etc/group"))
    now = _procs.uptime_ticks()
    tick = _procs.CLK_TCK

    def describer(p: Proc) -> Callable[[str], str]:
        uid = _procs.to_inside(p.uid, Path(f"/proc/{p.pid}/uid_map"))
        gid = _procs.to_inside(p.gid, Path(f"/proc/{p.pid}/gid_map"))
        elapsed = max(now - p.start_ticks, 1) / tick
        values: dict[str, Callable[[], str]] = {
            "pid": lambda: str(p.ns_pid),
            "hpid": lambda: str(p.pid),
            "ppid": lambda: str(inside.get(p.ppid, 0)),
            "pgid": lambda: str(_pgid(p.pid, inside)),
            "user": lambda: users.get(uid, str(uid)),
            "ruser": lambda: users.get(uid, str(uid)),
            "huser": lambda: host_users.get(p.uid, str(p.uid)),
            "group": lambda: groups.get(gid, str(gid)),
            "rgroup": lambda: groups.get(gid, str(gid)),
            "hgroup": lambda: host_groups.get(p.gid, str(p.gid)),
            "pcpu": lambda: f"{100 * p.cpu_ticks / tick / elapsed:.3f}",
            "etime": lambda: go_duration(elapsed),
            "time": lambda: go_duration(p.cpu_ticks / tick),
            "tty": lambda: _tty(p.tty_nr),
            "args": lambda: " ".join(p.args) or f"[{p.comm}]",
            "comm": lambda: p.comm,
            "nice": lambda: str(p.nice),
            "vsz": lambda: str(p.vsz // 1024),
            "rss": lambda: str(p.rss // 1024),
            "state": lambda: p.state,
        }
        return lambda d: values[d]()

    return [describer(p) for p in procs]


def _pgid(pid: int, inside: dict[int, int]) -> int:
    with contextlib.suppress(OSError):
        return inside.get(os.getpgid(pid), 0)
    return 0


def _names(path: Path) -> dict[int, str]:
    """id -> name from a passwd or group file (empty when it cannot be read)."""
    names: dict[int, str] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in path.read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[2].isdigit():
                names.setdefault(int(parts[2]), parts[0])
    return names


def _tty(tty_nr: int) -> str:
    """The terminal of ``/proc/PID/stat``'s tty_nr, as ps names it (``pts/0``, ``?``)."""
    if tty_nr == 0:
        return "?"
    major, minor = os.major(tty_nr), os.minor(tty_nr)
    if 136 <= major <= 143:
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}"
    return f"{major}:{minor}"


def go_duration(seconds: float) -> str:
    """A duration as Go prints one (``8.39s``, ``1m5s``, ``2h0m1s``, ``10ms``, ``0s``), the way
    Podman's ELAPSED, TIME and CPU TIME columns show them."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{_trim(ns / size)}{unit}"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    text = f"{_trim(rest / 1e9)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def _print(rows: list[tuple[str, ...]]) -> None:
    """Columns as ``podman top`` aligns them: each at least 12 wide, the last unpadded."""
    widths = [max(12, *(len(r[i]) + 1 for r in rows)) for i in range(len(rows[0]))]
    for row in rows:
        print("".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)) + row[-1])

