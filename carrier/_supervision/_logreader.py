"""Reading a container's log: every file in order (the old-format ``container.log``, then the
rotated ``ctr.log.N`` ... ``ctr.log.1``, then ``ctr.log``), and on from where it stopped as the
log grows, following ``ctr.log`` across a rotation (it reads the renamed file to its end, then
the new one from its start). Following is woken by inotify on the container's directory
(:func:`follow`), never by a timer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from .._util._inotify import (
    IN_CLOSE_NOWRITE,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE_SELF,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_TO,
    watch_directory,
)
from ._logrecords import Record, Stream, decode
from ._logwriter import rotated

LEGACY_NAME = "container.log"  # raw output, before streams were kept apart
WATCHED = (IN_MODIFY | IN_CLOSE_WRITE | IN_CLOSE_NOWRITE | IN_CREATE | IN_MOVED_TO
           | IN_DELETE_SELF | IN_MOVE_SELF)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class LogLine:
    """A line of a container's output, without its newline, and the stream it came on."""

    stream: Stream
    data: bytes
    time_ns: int  # when it was written, nanoseconds since the epoch (UTC)

    @property
    def text(self) -> str:
        """The line decoded as UTF-8 (undecodable bytes replaced)."""
        return self.data.decode(errors="replace")


def has_log(directory: Path) -> bool:
    """Whether the container in *directory* has a log in either format."""
    return rotated(directory, 0).exists() or (directory / LEGACY_NAME).exists()


class Cursor:
    """Where a reader of one container's log has got to; :meth:`read` returns what is new."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd = -1
        self._rest = b""  # the start of a record whose newline has not been written yet
        self._legacy: list[Record] = _legacy(directory / LEGACY_NAME)
        index = 1
        while rotated(directory, index).exists():
            index += 1
        self._older = [rotated(directory, i) for i in range(index - 1, 0, -1)]

    def read(self) -> list[Record]:
        """The records written since the last call (all of them at the first)."""
        out, self._legacy = self._legacy, []
        while self._older:  # the rotated files, read whole and closed
            path = self._older.pop(0)
            with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
                out.extend(self._records(f.read(), final=True))
        if self._fd < 0:
            try:
                self._fd = os.open(rotated(self.directory, 0), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return out
        for _ in range(1000):  # one rotation per turn at most, as a rule; bounded all the same
            out.extend(self._records(self._drain(), final=False))
            if not self._rotated():
                break
            out.extend(self._records(self._drain(), final=True))  # what came before the rename
            mine = os.fstat(self._fd)
            os.close(self._fd)
            self._fd = -1
            for path in self._newer_than(mine):  # rotated more than once since the last read
                with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
                    out.extend(self._records(f.read(), final=True))
            try:
                self._fd = os.open(rotated(self.directory, 0), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                break
        return out

    def _drain(self) -> bytes:
        chunks = []
        while chunk := os.read(self._fd, _CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def _rotated(self) -> bool:
        """Whether ``ctr.log`` is another file than the one open (renamed away)."""
        try:
            now = os.stat(rotated(self.directory, 0))
        except FileNotFoundError:
            return False  # mid-rotation, or the container is gone: keep what is open
        mine = os.fstat(self._fd)
        return (now.st_ino, now.st_dev) != (mine.st_ino, mine.st_dev)

    def _newer_than(self, mine: os.stat_result) -> list[Path]:
        """The rotated files written after the one *mine* describes, oldest first."""
        for index in range(1, 1001):
            try:
                st = os.stat(rotated(self.directory, index))
            except FileNotFoundError:
                return []  # not found: it was dropped, and nothing is known to be newer
            if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev):
                return [rotated(self.directory, i) for i in range(index - 1, 0, -1)]
        return []

    def _records(self, data: bytes, *, final: bool) -> list[Record]:
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = b"" if final else lines.pop()
        return [r for line in lines if line and (r := decode(line)) is not None]

    def close(self) -> None:
        """Close the open file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _legacy(path: Path) -> list[Record]:
    """The old-format log's lines, as stdout at the file's modification time."""
    try:
        with path.open("rb") as f:
            data, mtime = f.read(), os.fstat(f.fileno()).st_mtime_ns
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    out = [Record("stdout", mtime, line) for line in lines[:-1]]
    if lines[-1]:
        out.append(Record("stdout", mtime, lines[-1], partial=True))
    return out


class Joiner:
    """Turns records into whole lines: the ``P`` parts of a stream are joined with what follows
    them on that stream."""

    def __init__(self) -> None:
        self._parts: dict[Stream, list[Record]] = {}

    def feed(self, records: Iterable[Record]) -> Iterator[LogLine]:
        """The lines *records* finish."""
        for r in records:
            parts = self._parts.setdefault(r.stream, [])
            if r.partial:
                parts.append(r)
                continue
            first = parts[0].time_ns if parts else r.time_ns
            yield LogLine(r.stream, b"".join(p.data for p in parts) + r.data, first)
            parts.clear()

    def rest(self) -> Iterator[LogLine]:
        """The unfinished lines, at the end of the output."""
        for stream, parts in self._parts.items():
            if parts:
                yield LogLine(stream, b"".join(p.data for p in parts), parts[0].time_ns)
        self._parts.clear()


def lines(directory: Path) -> list[LogLine]:
    """Every line the log in *directory* holds now, the unfinished ones last."""
    cursor = Cursor(directory)
    try:
        joiner = Joiner()
        return [*joiner.feed(cursor.read()), *joiner.rest()]
    finally:
        cursor.close()


async def follow(directory: Path, ended: anyio.Event) -> AsyncIterator[list[Record]]:
    """The log's records as they are written, batch by batch, woken by inotify, until *ended*
    is set (then what is left is read, and it stops).

    **Cancellation:** safe; the inotify descriptor and the file are closed.
    """
    notify = watch_directory(directory, WATCHED, blocking=False)
    cursor = Cursor(directory)
    try:
        while True:
            done = ended.is_set()  # looked at before reading: nothing written before is missed
            if batch := cursor.read():
                yield batch
            if done:
                return
            if notify is None:  # no inotify left for this user: a bounded-interval poll
                with anyio.move_on_after(0.05):
                    await ended.wait()
                continue
            async with anyio.create_task_group() as tg:

                async def woken() -> None:
                    await anyio.wait_readable(notify)
                    with contextlib.suppress(BlockingIOError):
                        os.read(notify, 65536)
                    tg.cancel_scope.cancel()

                async def over() -> None:
                    await ended.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(woken)
                tg.start_soon(over)
    finally:
        cursor.close()
        if notify is not None:
            os.close(notify)
