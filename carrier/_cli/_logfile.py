"""``carrier logs``: a container's log records printed as Podman prints them (its stdout on our
stdout, its stderr on our stderr, ``-t`` a timestamp before each line), filtered by
``--since``/``--until``, cut to the last ``--tail`` lines, and followed (``-f``) as the log grows,
woken by inotify and ending once the container's supervisor has ended.

The end is seen without polling: the supervisor holds ``supervisor.lock`` open (and locked)
for its whole life, and the kernel reports the close of that file to a watch on the
container's directory; each such event is followed by a non-blocking lock probe on a
descriptor this process keeps open (so the probe itself causes no event).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .._supervision._logreader import WATCHED, Cursor
from .._supervision._logrecords import Record, stamp
from .._util._errors import CarrierError
from .._util._inotify import watch_directory


@dataclass
class Printer:
    """Writes records to *out* (stdout) and *err* (stderr), with a timestamp before each line
    when asked, keeping only those from *since* to *until* (nanoseconds; None: no bound)."""

    out: BinaryIO
    err: BinaryIO
    timestamps: bool = False
    since: int | None = None
    until: int | None = None
    _mid_line: set[str] = field(default_factory=set)  # streams whose line has begun

    def keeps(self, r: Record) -> bool:
        """Whether *r* is within the time bounds."""
        return (self.since is None or r.time_ns >= self.since) and \
            (self.until is None or r.time_ns <= self.until)

    def print(self, records: Sequence[Record]) -> None:
        """Write *records* (already filtered) and flush."""
        for r in records:
            f = self.out if r.stream == "stdout" else self.err
            if self.timestamps and r.stream not in self._mid_line:
                f.write(stamp(r.time_ns).encode() + b" ")
            f.write(r.data if r.partial else r.data + b"\n")
            if r.partial:
                self._mid_line.add(r.stream)
            else:
                self._mid_line.discard(r.stream)
        self.out.flush()
        self.err.flush()


def last_lines(records: Sequence[Record], lines: int) -> Sequence[Record]:
    """The records of the last *lines* lines (a line ends with its ``F`` record; unfinished
    parts at the end count as a line)."""
    if lines < 0:
        return records
    if lines == 0:
        return []
    found = 1 if records and records[-1].partial else 0
    for i in range(len(records) - 1 - found, -1, -1):
        if not records[i].partial:
            found += 1
            if found > lines:
                return records[i + 1:]
    return records


def show(container_dir: Path, printer: Printer, *, tail: int, follow: bool) -> None:
    """Print the log of the container in *container_dir*; with *follow*, go on until its
    supervisor has ended."""
    notify = watch_directory(container_dir, WATCHED) if follow else None
    if follow and notify is None:
        raise CarrierError("cannot follow the log: no inotify instance or watch left for this user")
    cursor = Cursor(container_dir)
    try:
        printer.print(last_lines([r for r in cursor.read() if printer.keeps(r)], tail))
        if notify is None:
            return
        try:  # after the watch is set: no release is missed
            lock = os.open(container_dir / "supervisor.lock", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            printer.print([r for r in cursor.read() if printer.keeps(r)])
            return
        try:
            while True:
                printer.print([r for r in cursor.read() if printer.keeps(r)])
                if _released(lock):
                    printer.print([r for r in cursor.read() if printer.keeps(r)])
                    return
                select.select([notify], [], [])
                os.read(notify, 65536)
        finally:
            os.close(lock)
    finally:
        cursor.close()
        if notify is not None:
            os.close(notify)


def _released(lock: int) -> bool:
    """Whether no supervisor holds the lock open on descriptor *lock* (a probe, let go at once)."""
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    with contextlib.suppress(OSError):
        fcntl.flock(lock, fcntl.LOCK_UN)
    return True
