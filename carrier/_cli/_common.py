"""What the command families share: the Carrier root after reconcile, forking a supervisor into
the background, and one-line errors."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from .._util._errors import CarrierError, only_leaf
from .._util._root import Root


def each(refs: Iterable[str], act: Callable[[str], object]) -> int:
    """Docker's way with several containers (or volumes): *act* on each in turn; one that
    fails is one line on stderr and the others still go. The exit code: 125 if any failed."""
    failed = False
    for ref in refs:
        try:
            act(ref)
        except CarrierError as e:
            print(f"carrier: {e}", file=sys.stderr)
            failed = True
    return 125 if failed else 0


def open_root() -> Root:
    """The Carrier root, with the leftovers of dead supervisors reconciled first."""
    import anyio

    from .._supervision._control import reconcile

    root = Root.open()
    anyio.run(reconcile, root)
    return root


def in_background(log: Path, work: Callable[..., object], *args: object,
                  fds: tuple[int, ...] = ()) -> str:
    """Start a supervisor in its own session that runs ``work(*args, *fds, status_fd)``, its
    output into *log*; return the status it wrote ("started", or why it could not start) once
    it has closed that fd. Under the fork server, a fresh fork of the server runs it when *work*
    and *args* can be pickled (``_spawn.spawn``: it then keeps none of the pages this command
    dirtied); else (or with no server) this process forks it."""
    from . import _spawn

    read_end, write_end = os.pipe()
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        spawned = _spawn.spawn(work, args, (null, out, out), [*fds, write_end])
    finally:
        os.close(out)
        os.close(null)
    if not spawned:
        _fork(log, lambda status: work(*args, *fds, status), read_end, write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as status:
        return status.read().decode(errors="replace").strip()


def _fork(log: Path, work: Callable[[int], object], read_end: int, write_end: int) -> None:
    """Fork the supervisor from this process (no fork server, or *work* is a closure)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the detached supervisor
        os.close(read_end)
        code = 0
        try:
            os.setsid()
            _redirect_std(log)
            work(write_end)
        except BaseException:
            traceback.print_exc()  # into the supervisor's log: its only trace
            code = 1
        finally:
            os._exit(code)


def _redirect_std(log: Path) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - replaces the process's stdout
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - likewise stderr


def one_line(exc: BaseException) -> str:
    """An exception as the one line a person reads."""
    exc = only_leaf(exc) or exc
    if isinstance(exc, OSError) and exc.strerror:  # "No space left on device", not "[Errno 28]"
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc) if isinstance(exc, CarrierError) else f"{type(exc).__name__}: {exc}"
