"""A terminal for a command whose caller has none (``run -t`` piped, or ``-d -t``).

runc relays a container's pseudo-terminal only to a terminal that is its own controlling one,
in the foreground. So when the caller's standard input is not a terminal, Carrier makes a pty
pair: the runtime gets the slave as its controlling terminal and its standard streams, and the
supervisor copies what the master reads to the caller's standard output (or the log). When
the caller has a real terminal, none of this is used: the runtime relays it directly.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import subprocess
import termios
import tty
from collections.abc import Callable
from typing import IO, Any

import anyio

from .._util._fs import discard_ready


def is_terminal(stream: int | IO[Any] | None) -> bool:
    """Whether a :class:`Stdio` stream (None: ours) is a terminal."""
    if stream is None:
        return os.isatty(0)
    if isinstance(stream, int):
        return stream >= 0 and os.isatty(stream)
    return stream.isatty()


def _fd(stream: int | IO[Any] | None, default: int) -> int:
    if stream is None or stream == subprocess.DEVNULL:
        return default if stream is None else -1
    return stream if isinstance(stream, int) else stream.fileno()


class Console:
    """A pty pair whose master the supervisor reads into *out* (a :class:`Stdio` stream)."""

    def __init__(self, out: int | IO[Any] | None, rows: int = 24, cols: int = 80,
                 sink: Callable[[bytes], None] | None = None) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        tty.setraw(self.slave)  # the container's terminal already turned \n into \r\n
        os.set_blocking(self.master, False)
        self._out = _fd(out, 1)
        self._sink = sink  # also gets every chunk (the container's log)

    def discard(self) -> None:
        """Drop what the terminal holds now (a failed runtime's words, before a retry)."""
        discard_ready(self.master)

    def started(self) -> None:
        """The runtime holds the slave now: drop ours, so that the master reads EOF (EIO)
        once the runtime and the container have closed theirs."""
        os.close(self.slave)
        self.slave = -1

    async def relay(self) -> None:
        """Copy the terminal's output until it ends (a member of the container's group).

        **Cancellation:** safe; :meth:`drain` takes what is left.
        """
        while self.master >= 0:
            await anyio.wait_readable(self.master)
            if self._copy() is False:
                return

    def drain(self) -> None:
        """Copy what the terminal still holds (after the runtime ended)."""
        while self.master >= 0 and self._copy():
            pass

    def _copy(self) -> bool | None:
        """One read from the master into *out*: True if something was copied, None if nothing
        is ready, False at the end."""
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno == errno.EIO:  # every slave closed: the terminal is done
                return False
            raise
        if not data:
            return False
        if self._sink is not None:
            self._sink(data)
        view = memoryview(data)
        while view and self._out >= 0:
            view = view[os.write(self._out, view):]
        return True

    def close(self) -> None:
        """Close both ends (idempotent)."""
        for fd in (self.slave, self.master):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.slave = self.master = -1
