"""``carrier attach``: the supervisor's side. A client that asked for an attach on the control
socket keeps its connection, and frames flow both ways on it: the container's output to the
client (stdout and stderr apart, as the log records them), the client's keystrokes and window
size to the container's terminal, and the exit code when the run ends.

Frames are a kind byte, a 4-byte big-endian length and the payload. Every attached client gets
every chunk from the moment it attached; one that cannot keep up (its queue of
:data:`_QUEUE` frames is full) is disconnected rather than allowed to hold the container's
output back. The detach keys are the client's business: detaching is just closing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import termios
from collections.abc import Callable

import anyio

from .._util._logging import log
from ._logrecords import Stream

STDIN, STDOUT, STDERR, EXIT, RESIZE, STDIN_END = 0, 1, 2, 3, 4, 5
"""Frame kinds (STDIN_END: the client's input ended; a ``-i`` container's stdin then closes)."""
_HEADER = struct.Struct(">BI")
_QUEUE = 1024  # frames buffered per client before it counts as stuck
_MAX_FRAME = 1 << 20


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One frame on the wire."""
    return _HEADER.pack(kind, len(payload)) + payload


class FrameReader:
    """Cuts a byte stream into frames (kind, payload) as it arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The whole frames *data* completes; a frame longer than 1 MiB is refused."""
        self._buffer += data
        out: list[tuple[int, bytes]] = []
        while len(self._buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(self._buffer)
            if length > _MAX_FRAME:
                raise ValueError(f"attach frame of {length} bytes")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            out.append((kind, bytes(self._buffer[_HEADER.size:end])))
            del self._buffer[:end]
        return out


async def send_all(sock: socket.socket, data: bytes) -> None:
    """Write all of *data* to the non-blocking *sock*, waiting while it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            await anyio.wait_writable(sock)


def set_size(fd: int, rows: int, cols: int) -> None:
    """Give terminal *fd* (a pty master) a window size; the kernel sends SIGWINCH inside."""
    if 0 < rows < 65536 and 0 < cols < 65536:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _Client:
    """One attached connection: its queue of frames to send, and whether it is done."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.send, self.queue = anyio.create_memory_object_stream[bytes](_QUEUE)

    def offer(self, data: bytes) -> None:
        """Queue *data* (a frame); a client that is this far behind is dropped."""
        try:
            self.send.send_nowait(data)
        except anyio.WouldBlock:
            self.send.close()  # its sender ends, and with it the connection
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass


class Hub:
    """The attach service of one container (all its runs): who is attached, and where input
    goes (*terminal* gives the pty master of the current run, else the write end of its stdin
    pipe, or -1 if it has neither; *end_input* closes that pipe, as conmon does when an
    attached client's input ends)."""

    def __init__(self, terminal: Callable[[], int],
                 end_input: Callable[[], None] = lambda: None) -> None:
        self._terminal = terminal
        self._end_input = end_input
        self._clients: set[_Client] = set()  # attached to the current run
        self._serving = 0  # connections still open (an ended run's last frames in flight)
        self._idle = anyio.Event()
        self._idle.set()

    def publish(self, stream: Stream, data: bytes) -> None:
        """A chunk of the container's output, for every attached client."""
        if self._clients:
            message = frame(STDOUT if stream == "stdout" else STDERR, data)
            for client in list(self._clients):
                client.offer(message)

    def ended(self, exit_code: int) -> None:
        """The run ended with *exit_code*: every client gets it, and its session ends."""
        for client in list(self._clients):
            client.offer(frame(EXIT, str(exit_code).encode()))
            client.send.close()
        self._clients.clear()

    async def serve(self, sock: socket.socket, request: dict[str, object]) -> None:
        """Serve the attached connection *sock* until the run ends, the client leaves or is
        too slow (a task of the control socket's server; it closes *sock*)."""
        sock.setblocking(False)
        client = _Client(sock)
        self._clients.add(client)
        self._serving += 1
        self._idle = anyio.Event()
        try:
            rows, cols = request.get("rows"), request.get("cols")
            if isinstance(rows, int) and isinstance(cols, int):
                self._resize(rows, cols)
            async with anyio.create_task_group() as tg:

                async def sender() -> None:
                    with contextlib.suppress(OSError):  # the client went away mid-send
                        async with client.queue:
                            async for data in client.queue:
                                await send_all(sock, data)
                    tg.cancel_scope.cancel()

                tg.start_soon(sender)
                with contextlib.suppress(OSError):  # reset by a client that left
                    await self._receive(sock)
                tg.cancel_scope.cancel()  # the client left
        except Exception as e:  # one session's failure never ends the container
            log.warning("attach.failed", error=repr(e))
        finally:
            self._clients.discard(client)
            client.send.close()
            sock.close()
            self._serving -= 1
            if not self._serving:
                self._idle.set()

    async def drained(self) -> None:
        """Wait until every connection is closed: after the last run, the exit code has
        reached each attached client before the supervisor goes (one that came after the
        run's end is let go: it reads the exit from the record)."""
        for client in self._clients:
            client.send.close()
        await self._idle.wait()

    async def _receive(self, sock: socket.socket) -> None:
        """The client's frames: keystrokes to the terminal, window sizes; until it closes."""
        reader = FrameReader()
        while True:
            await anyio.wait_readable(sock)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                return
            try:
                frames = reader.feed(data)
            except ValueError:
                return
            for kind, payload in frames:
                if kind == STDIN:
                    await self._type(payload)
                elif kind == RESIZE and len(payload) == 4:
                    self._resize(*struct.unpack(">HH", payload))
                elif kind == STDIN_END:
                    self._end_input()

    async def _type(self, data: bytes) -> None:
        """Write *data* to the terminal's input (dropped between runs, or without one)."""
        view = memoryview(data)
        for _ in range(1 << 16):  # bounded: a terminal that never drains loses the rest
            fd = self._terminal()
            if not view or fd < 0:
                return
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                with anyio.move_on_after(1):
                    await anyio.wait_writable(fd)
            except OSError:
                return

    def _resize(self, rows: int, cols: int) -> None:
        fd = self._terminal()
        if fd >= 0:
            with contextlib.suppress(OSError):
                set_size(fd, rows, cols)
