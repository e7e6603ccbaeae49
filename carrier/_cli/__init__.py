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


def console() -> NoReturn:
    """The ``carrier`` console script: the command runs in a warm fork of the fork server
    (``_fastpath``, ``_zygote``) when there is one, else here. Either way it exits without the
    interpreter's teardown (30-60 ms of freeing modules on every command)."""
    argv = sys.argv[1:]
    from . import _fastpath

    if _fastpath.enabled():
        code = _fastpath.run(argv)
        if code is not None:
            os._exit(code)
    os._exit(run_main(argv))
