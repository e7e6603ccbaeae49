"""Which signals a supervisor passes on to its container, and holding signals off while a
container's record is being written.

A foreground ``carrier run`` forwards every signal it can catch, as ``docker run``'s sig-proxy
does, so that no signal ends the supervisor and leaves its container behind. Not forwarded:
SIGKILL and SIGSTOP (they cannot be caught), SIGCHLD (about our own children), and the signals
the kernel raises for a fault in this very process (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP,
SIGSYS): catching those would turn a crash into a loop.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import cast

_NOT_FORWARDED = {
    signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD,
    signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS,
}

# Real-time signals are plain ints (Signals has no members for them); every API that takes a
# Signals (signal.signal, pthread_sigmask, anyio's receivers) takes the number at run time.
FORWARDED = cast("tuple[signal.Signals, ...]", tuple(
    sorted(int(s) for s in signal.valid_signals() if s not in _NOT_FORWARDED)))


def name(sig: int) -> str:
    """``SIGUSR1``, or ``SIGRTMIN+3`` for a real-time signal."""
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"


@contextlib.contextmanager
def held(signals: tuple[signal.Signals, ...] = FORWARDED) -> Iterator[None]:
    """Block *signals* for the block: one that arrives meanwhile is delivered (to whatever
    handles it then) only when the block ends, so that it cannot cut a state file's writing in
    two. Threads started inside inherit the mask."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
