"""The ``carrier`` command line: the cyclopts app, one module per command family, and table
formatting. Each command imports what it needs when it runs, so ``--help`` and ``ps`` stay cheap.

Imports: every layer below. Never ``_library``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn


def run_main(argv: list[str]) -> int:
    """Run one command line in this process; its exit code, the output flushed. The command
    line itself loads inside the guard, so that even a Ctrl-C while it loads is one line."""
    sys.unraisablehook = _unraisable
    try:
        from ._app import main

        code = main(argv)
    except KeyboardInterrupt:
        print("carrier: interrupted", file=sys.stderr)
        code = 130
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    return code


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """An exception Python cannot raise (a finalizer's: often of an object that a Ctrl-C left
    half built, such as an event loop) goes to the debug log, not as a traceback to the user's
    terminal: the interrupt itself is already reported in one line."""
    import logging

    logging.getLogger("carrier").debug(  # the object's type only: its repr may fail, half built
        "unraisable exception in a %s: %r", type(unraisable.object).__name__, unraisable.exc_value)


def _open_std() -> None:
    """A standard descriptor the caller closed (``>&-``) becomes /dev/null, as Go programs
    such as Podman get it: else the next descriptor opened would take its number (the working
    directory handed to the fork server would become the command's stdout), and Python's
    stream for it is None (a traceback at the first flush)."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if null == fd:
                os.set_inheritable(fd, True)  # a standard stream, as the programs run expect
            else:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115


def console() -> NoReturn:
    """The ``carrier`` console script: the command runs in a warm fork of the fork server
    (``_fastpath``, ``_zygote``) when there is one, else here. Either way it exits without the
    interpreter's teardown (30-60 ms of freeing modules on every command)."""
    import signal

    # An ignored SIGCHLD is inherited across exec (some daemons and CI runners leave it so):
    # the kernel would then reap each child at once, so no exit status could be read (the
    # runtime's, the helper's, the container's), and the fork server and containers would
    # inherit it too. Every command starts with the default, as the container expects.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _open_std()
    argv = sys.argv[1:]
    try:
        from . import _fastpath

        code = _fastpath.run(argv) if _fastpath.enabled() else None
    except KeyboardInterrupt:  # a Ctrl-C before the command was handed over: nothing ran
        print("carrier: interrupted", file=sys.stderr)
        os._exit(130)
    os._exit(code if code is not None else run_main(argv))
