"""A command's side of ``_zygote``'s spawn: ask the fork server this command was forked from for
a fresh fork of itself that runs a given function (a detached supervisor), so that the new
process shares the server's pages and none of the ones this command wrote.

Kept apart from the server (``_zygote``), which imports the whole CLI to warm it: the CLI's
commands import only this.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from .._util._logging import configured
from ._fastpath import caller_state

MAX = 1 << 20  # the largest request or reply on the server's socket
SPAWN_FDS = 8  # stdin, stdout, stderr, cwd, and up to four the work takes
# The socket of the server this process is (or was forked from): set by ``_zygote.serve``.
serving: Path | None = None


def spawn(work: Callable[..., object], args: tuple[object, ...], std: tuple[int, int, int],
          fds: list[int]) -> bool:
    """In a command this server forked: have the server fork a fresh process (through a child
    that exits at once, so that nobody waits for it) that runs ``work(*args, *fds)`` in its own
    session, on *std* as its standard input, output and error, with this process's directory,
    environment, umask, limits, signal mask and title; whether it runs (False: nothing ran,
    fork here instead).

    Why: a process forked from this command keeps every page the command dirtied (its option
    parsing, its records) as its own once the command exits; a fresh fork of the server does
    not (3 MiB less per detached supervisor, docs/performance.md). *work* is pickled by name,
    *args* by value."""
    if serving is None or len(fds) > SPAWN_FDS - 4:
        return False
    import pickle

    from setproctitle import getproctitle

    try:
        payload = pickle.dumps((work, args))
    except (pickle.PicklingError, AttributeError, TypeError):
        return False  # a closure: only this process has it
    mask = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    request = json.dumps({"work": payload.decode("latin-1"), **caller_state(), "mask": mask,
                          "title": getproctitle(), "logging": configured()}).encode()
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    started = False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
            conn.connect(str(serving))
            conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", [*std, cwd, *fds]))])
            # Until both the server and the fork have closed it: the fork says it runs (before it
            # runs *work*); the server says how the child in between ended, in either order.
            for _ in range(4):
                data = conn.recv(MAX)
                if not data:
                    break
                started = started or "pid" in json.loads(data)
    except OSError:
        pass  # no server (killed, idle-ended): nothing was forked unless it said it runs
    finally:
        os.close(cwd)
    return started

