"""A container's stdout and stderr without a terminal: two pipes the supervisor reads, each
chunk logged with its stream (:class:`._logwriter.LogWriter`) and copied on to where the caller
asked (our own stdout and stderr in the foreground, nowhere when detached).

Copying through the supervisor is what keeps the streams apart and stamped in the log, and
what makes a foreground run's output loggable at all (see docs/cli.md for the cost measured).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import IO, Any

import anyio

from .._util._fs import discard_ready
from ._logrecords import Stream
from ._logwriter import LogWriter

_CHUNK = 1 << 16
_READS = 16  # reads per wake-up at most (1 MiB)


def target_fd(stream: int | IO[Any] | None, ours: int) -> int:
    """The descriptor a :class:`Stdio` stream names (None: *ours*; ``DEVNULL``: -1, none)."""
    if stream is None:
        return ours
    if isinstance(stream, int):
        return -1 if stream == subprocess.DEVNULL else stream
    return stream.fileno()


class _Pipe:
    """One stream's pipe: the write end for the runtime, the read end for the supervisor."""

    def __init__(self, stream: Stream, target: int) -> None:
        self.stream, self.target = stream, target
        self.read_end, self.write_end = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_end, False)

    def copy(self, log: LogWriter) -> bool | None:
        """One read into the log and the target: True if something came, None if nothing is
        ready, False at the end."""
        if self.read_end < 0:
            return False
        chunks: list[bytes] = []
        for _ in range(_READS):  # what is there now, in one log record batch: fewer writes
            try:
                chunk = os.read(self.read_end, _CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                if not chunks:
                    return False
                break
            chunks.append(chunk)
        if not chunks:
            return None
        data = b"".join(chunks)
        log.write(self.stream, data)
        view = memoryview(data)
        while view and self.target >= 0:
            try:
                view = view[os.write(self.target, view):]
            except BlockingIOError:  # a non-blocking target that is full: it loses the rest
                break
            except OSError:  # our reader went away (EPIPE): so does the container's, as if
                self.target = -1  # it wrote there itself (`run IMG yes | head -1` ends)
                os.close(self.read_end)
                self.read_end = -1
                return False
        return True


class Output:
    """The pipes of one run of a container (stdout, stderr)."""

    def __init__(self, log: LogWriter, stdout: int | IO[Any] | None,
                 stderr: int | IO[Any] | None) -> None:
        self.log = log
        self.pipes = [_Pipe("stdout", target_fd(stdout, 1)), _Pipe("stderr", target_fd(stderr, 2))]

    @property
    def write_ends(self) -> tuple[int, int]:
        """What the runtime gets as its stdout and stderr."""
        return self.pipes[0].write_end, self.pipes[1].write_end

    def started(self) -> None:
        """The runtime holds the write ends now: drop ours, so that the read ends see EOF once
        the container's processes have closed theirs."""
        for p in self.pipes:
            if p.write_end >= 0:
                os.close(p.write_end)
                p.write_end = -1

    async def relay(self) -> None:
        """Copy both streams until they end (a member of the container's group).

        **Cancellation:** safe; :meth:`drain` takes what is left.
        """
        async with anyio.create_task_group() as tg:
            for p in self.pipes:
                tg.start_soon(self._relay_one, p)

    async def _relay_one(self, pipe: _Pipe) -> None:
        while pipe.read_end >= 0:
            await anyio.wait_readable(pipe.read_end)
            if pipe.copy(self.log) is False:
                return

    def discard(self) -> None:
        """Drop what the pipes hold now: a runtime's words about a start that failed before
        the container existed, which are not the container's output (before a retry)."""
        for p in self.pipes:
            if p.read_end >= 0:
                discard_ready(p.read_end)

    def drain(self) -> None:
        """Copy what the pipes still hold (after the runtime ended), without waiting."""
        for p in self.pipes:
            for _ in range(1 << 16):  # bounded: at most 4 GiB are still in a pipe
                if not p.copy(self.log):
                    break

    def close(self) -> None:
        """Close every end (idempotent)."""
        self.started()
        for p in self.pipes:
            if p.read_end >= 0:
                with contextlib.suppress(OSError):
                    os.close(p.read_end)
                p.read_end = -1
