"""The ``carrier`` command line: the cyclopts app, one module per command family, and table
formatting. Each command imports what it needs when it runs, so ``--help`` and ``ps`` stay cheap.

Imports: every layer below. Never ``_library``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn


def console() -> NoReturn:
    """The ``carrier`` console script. The command line itself loads inside the guard, so that
    even a Ctrl-C while it loads is one line; then exit without the interpreter's teardown
    (30-60 ms of freeing modules on every command), the output flushed first."""
    try:
        from ._app import main

        code = main()
    except KeyboardInterrupt:
        print("carrier: interrupted", file=sys.stderr)
        code = 130
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
