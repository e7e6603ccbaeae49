"""Proof that nothing Carrier started outlived a test: processes (supervisors' helpers,
holders, runtimes, containers), runtime state under the Carrier root, and mounts.

Carrier's own suite checks itself with this, so there is one implementation of "nothing leaked".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .._util._root import default_root

FORK_SERVER = "carrier._cli._zygote"
"""The CLI's per-user fork server: resident by design (docs/performance.md), so no leak; the
commands it forks carry their caller's command line, and count."""
KEEPER = "carrier._cli._keeper"
"""The CLI's keeper of detached containers: resident until idle by design; the containers it
keeps are processes of their own, and count (and so does each one's supervisor lock)."""


def user_processes() -> dict[int, str]:
    """Live (non-zombie) processes of this user, except this process, the CLI's fork server
    and its keepers: pid -> command line."""
    found = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}")
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if (st.st_uid == os.getuid() and fields[0] != b"Z" and FORK_SERVER not in cmd
                and KEEPER not in cmd):
            found[int(entry)] = cmd
    return found


def still_alive(processes: dict[int, str], bound: float = 10.0) -> dict[int, str]:
    """Those of *processes* that have not exited within *bound* seconds in all, waited for on
    pidfds: one that is exiting (its command line already gone) or a zombie is no leak."""
    deadline = time.monotonic() + bound
    alive = {}
    for pid, cmd in processes.items():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                continue  # it exited
        finally:
            os.close(fd)
        alive[pid] = cmd
    return alive


@dataclass(frozen=True)
class Leftovers:
    """What outlived the checked span; empty (false) when nothing did."""

    processes: dict[int, str] = field(default_factory=dict)
    runtime_state: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    supervised: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.processes or self.runtime_state or self.mounts or self.supervised)

    def __str__(self) -> str:
        parts = []
        if self.processes:
            parts.append(f"processes left behind: {self.processes}")
        if self.runtime_state:
            parts.append(f"runtime state left behind: {self.runtime_state}")
        if self.mounts:
            parts.append(f"mounts left behind: {self.mounts}")
        if self.supervised:
            parts.append(f"containers still supervised: {self.supervised}")
        return "; ".join(parts) or "nothing left behind"


class LeakCheck:
    """Remembers this user's processes now; :meth:`leftovers` later names what is new and
    still alive, plus runtime state and mounts left under the Carrier *root* (default: the
    one ``carrier.run`` uses)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.before = set(user_processes())
        self.state_before = set(self._state())
        self.mounts_before = set(self._mounts())
        self.supervised_before = set(self._supervised())

    def _state(self) -> list[str]:
        """The containers that have runtime state under the root now."""
        runtime = self.root / "runtime"
        return sorted(p.name for p in runtime.iterdir()) if runtime.is_dir() else []

    def _supervised(self) -> list[str]:
        """The containers under the root whose supervisor lock is held now (a supervisor
        process, or a group in a keeper, still at work on them)."""
        containers = self.root / "containers"
        found = []
        for lock in sorted(containers.glob("*/supervisor.lock")) if containers.is_dir() else []:
            try:
                fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                found.append(lock.parent.name)
            finally:
                os.close(fd)
        return found

    def _mounts(self) -> list[str]:
        """This process's mounts under the root now."""
        return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if str(self.root) in line]

    def leftovers(self, bound: float = 10.0) -> Leftovers:
        """What is new and left now (what was there before, such as a longer-scoped
        fixture's container, is not counted); exiting processes get *bound* seconds to go."""
        new = {p: c for p, c in user_processes().items() if p not in self.before}
        state = [s for s in self._state() if s not in self.state_before]
        mounts = [m for m in self._mounts() if m not in self.mounts_before]
        alive = still_alive(new, bound)
        # A group ends a moment after its processes: bounded poll (a lock gives no event).
        deadline = time.monotonic() + bound
        while (supervised := [c for c in self._supervised() if c not in self.supervised_before]) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        return Leftovers(alive, state, mounts, supervised)

    def check(self, bound: float = 10.0) -> None:
        """Raise AssertionError naming whatever was left behind."""
        left = self.leftovers(bound)
        assert not left, str(left)


@contextlib.contextmanager
def no_leftovers(root: Path | str | None = None, bound: float = 10.0) -> Iterator[LeakCheck]:
    """Fail (AssertionError) if the block leaves a Carrier process, runtime state under
    *root* (default: the one ``carrier.run`` uses) or a mount of it behind."""
    check = LeakCheck(root)
    yield check
    check.check(bound)
