"""Writing a container's log (``ctr.log``, records of :mod:`._logrecords`), rotated as Docker's
``json-file`` driver rotates: once the file reaches ``max-size`` it becomes ``ctr.log.1`` (the
older ones move up to ``ctr.log.2`` ...), and only ``max-file`` files are kept in all, the
current one included; with ``max-file`` 1 the file starts over empty.

The supervisor is the only writer (one thread), and each chunk of output goes out in one
``write`` on an ``O_APPEND`` descriptor, so a reader never sees half a record from a chunk
written before it looked. The last lines also stay in memory, for a ``--rm`` container's
caller after its files are gone.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ._logrecords import Record, Stream, encode

LOG_NAME = "ctr.log"
KEPT_LINES = 200  # the lines kept in memory
KEPT_BYTES = 64 * 1024  # the output they are taken from


_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kmgt]?)i?b?", re.IGNORECASE)


def log_options(opts: Sequence[str]) -> tuple[int | None, int]:
    """``--log-opt`` values as Docker's json-file driver takes them: ``max-size`` (bytes, or
    with k, m, g, t: powers of 1024; at least 1) and ``max-file`` (a count from 1, only with
    max-size); the size limit (None: none) and the number of files."""
    from .._util._errors import CarrierError

    given: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or key not in ("max-size", "max-file"):
            raise CarrierError(f"invalid --log-opt {opt!r}: expected max-size=SIZE or max-file=N")
        given[key] = value
    size: int | None = None
    if "max-size" in given:
        m = _SIZE.fullmatch(given["max-size"])
        if m is None or (size := int(float(m[1]) * 1024 ** " kmgt".index(m[2].lower() or " "))) < 1:
            raise CarrierError(f"invalid --log-opt max-size={given['max-size']}: expected a size "
                               "such as 10m, 512k or a number of bytes")
    count = 1
    if "max-file" in given:
        if not given["max-file"].isdigit() or not 1 <= int(given["max-file"]) <= 1000:
            raise CarrierError(f"invalid --log-opt max-file={given['max-file']}: expected a "
                               "number of files from 1 to 1000")
        if size is None:
            raise CarrierError("invalid --log-opt max-file: it needs max-size too")
        count = int(given["max-file"])
    return size, count


def rotated(directory: Path, index: int) -> Path:
    """The log file *index* rotations old (0: the current one)."""
    return directory / (LOG_NAME if index == 0 else f"{LOG_NAME}.{index}")


class LogWriter:
    """Appends output to the log in *directory*, rotating at *max_size* bytes (None: never)."""

    def __init__(self, directory: Path, max_size: int | None = None, max_file: int = 1) -> None:
        self.path = rotated(directory, 0)
        self.directory = directory
        self.max_size, self.max_file = max_size, max(1, max_file)
        self._recent: collections.deque[tuple[Stream, int, bytes]] = collections.deque()
        self._recent_size = 0  # the bytes in _recent: the last chunks, kept to KEPT_BYTES
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self.tap: Callable[[Stream, bytes], None] | None = None  # also gets every chunk (attach)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, stream: Stream, data: bytes) -> None:
        """Log *data*, a chunk of the container's *stream*."""
        if not data or self._fd < 0:
            return
        if self.tap is not None:
            self.tap(stream, data)
        now = time.time_ns()
        chunk = encode(stream, now, data)
        while chunk:
            if self.max_size is not None and self._size >= self.max_size:
                self._rotate()  # before a write, as Docker does: no file is left empty
            piece = chunk
            if self.max_size is not None and len(chunk) > self.max_size - self._size:
                cut = chunk.rfind(b"\n", 0, self.max_size - self._size) + 1  # whole records
                piece = chunk[:cut or chunk.index(b"\n") + 1]
            chunk = chunk[len(piece):]
            view = memoryview(piece)
            while view:
                view = view[os.write(self._fd, view):]
            self._size += len(piece)
        self._recent.append((stream, now, data))  # cheap: lines are made only when asked
        self._recent_size += len(data)
        while self._recent_size - len(self._recent[0][2]) >= KEPT_BYTES:
            self._recent_size -= len(self._recent.popleft()[2])

    def _rotate(self) -> None:
        """The current file moves to ``.1`` (the others up by one, the oldest beyond
        *max_file* dropped) and a new, empty one takes its place."""
        os.close(self._fd)
        rotated(self.directory, self.max_file - 1).unlink(missing_ok=True)
        for index in range(self.max_file - 2, -1, -1):
            with contextlib.suppress(FileNotFoundError):
                rotated(self.directory, index).rename(rotated(self.directory, index + 1))
        self.path.unlink(missing_ok=True)  # max_file 1: nothing kept
        self._fd = self._open()
        self._size = 0

    def last_lines(self) -> list[Record]:
        """The records of the last lines written (at most :data:`KEPT_LINES`), oldest first."""
        out: list[Record] = []
        for stream, time_ns, data in self._recent:
            whole, newline, rest = data.rpartition(b"\n")
            if newline:
                out.extend(Record(stream, time_ns, line) for line in whole.split(b"\n"))
            if rest:
                out.append(Record(stream, time_ns, rest, partial=True))
        return out[-KEPT_LINES:]

    def close(self) -> None:
        """Close the file (idempotent); the lines in memory stay."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
