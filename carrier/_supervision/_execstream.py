"""``Container.exec_stream``: a command inside a running container whose stdout and stderr
(and, if asked, stdin) are async byte streams of the caller, read while it runs.

The runtime's exec gets the write ends of two pipes (and the read end of a third); the caller
reads the other ends as anyio byte streams, woken when there is data (``wait_readable``), not
by a timer. The command itself runs as :meth:`Container.exec` runs it (``exec_in``), in a task
of the block, so leaving the block ends it: killed (with the runtime's exec) if it still runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream

from .._runtime._exec import exec_in
from .._state._records import Record
from .._util._root import Root


class FdReceiveStream(ByteReceiveStream):
    """The read end of a pipe as an anyio byte stream (``EndOfStream`` once every writer is
    gone)."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next bytes, as soon as some are there."""
        while True:
            if self._fd < 0:
                raise anyio.ClosedResourceError
            try:
                data = os.read(self._fd, max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                continue
            if not data:
                raise anyio.EndOfStream
            return data

    async def aclose(self) -> None:
        """Close the read end (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class FdSendStream(ByteSendStream):
    """The write end of a pipe as an anyio byte stream; closing it is the reader's end of
    input."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd

    async def send(self, item: bytes) -> None:
        """Write all of *item*, waiting while the pipe is full."""
        view = memoryview(item)
        while view:
            if self._fd < 0:
                raise anyio.ClosedResourceError
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
            except BrokenPipeError:
                raise anyio.BrokenResourceError from None

    async def aclose(self) -> None:
        """Close the write end (idempotent): the command reads end of input."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class ExecProcess:
    """A command running inside a container, from :meth:`Container.exec_stream`."""

    stdout: ByteReceiveStream
    stderr: ByteReceiveStream
    stdin: ByteSendStream | None  # with ``stdin=True`` only
    returncode: int | None = None  # its exit status, once it has ended
    _done: anyio.Event = field(default_factory=anyio.Event)
    _error: BaseException | None = None
    _reported: bool = False  # wait() has raised _error

    async def wait(self) -> int:
        """Wait until the command has ended; its exit status (126/127 as for ``run``).

        Raises :class:`carrier.ExecTimeoutError` if it ran past its timeout.
        **Cancellation:** safe; the command keeps running until the block ends.
        """
        await self._done.wait()
        if self._error is not None:
            self._reported = True
            raise self._error
        assert self.returncode is not None
        return self.returncode


@contextlib.asynccontextmanager
async def exec_stream(root: Root, record: Record, argv: Sequence[str], *, env: Sequence[str],
                      workdir: str | None, user: str | None, stdin: bool,
                      timeout: float | None) -> AsyncIterator[ExecProcess]:
    """Run *argv* inside while the block reads its streams; see :meth:`Container.exec_stream`."""
    fds: list[int] = []
    with contextlib.ExitStack() as ours:  # the ends the runtime's exec gets: closed at the end
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        fds += [out_r, err_r]
        output = ours.enter_context(os.fdopen(out_w, "wb", buffering=0))
        error = ours.enter_context(os.fdopen(err_w, "wb", buffering=0))
        source: Any = None
        sink: FdSendStream | None = None
        if stdin:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            fds.append(in_w)
            source = ours.enter_context(os.fdopen(in_r, "rb", buffering=0))
            sink = FdSendStream(in_w)
        proc = ExecProcess(FdReceiveStream(out_r), FdReceiveStream(err_r), sink)
        fds.clear()

        async def run() -> None:
            try:
                proc.returncode = await exec_in(root, record, argv, env=env, workdir=workdir,
                                                user=user, output=output, error=error,
                                                stdin=source, timeout=timeout)
            except Exception as e:  # handed to wait() and to the end of the block
                proc._error = e
            finally:
                ours.close()  # our write ends too: the caller's reads end once the command's do
                proc._done.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                yield proc
                tg.cancel_scope.cancel()  # the command, if it still runs, is killed and reaped
        finally:
            for fd in fds:
                os.close(fd)
            with anyio.CancelScope(shield=True):
                for stream in (proc.stdout, proc.stderr, proc.stdin):
                    if stream is not None:
                        await stream.aclose()
        if proc._error is not None and not proc._reported:  # e.g. its timeout, never waited for
            raise proc._error
