"""``carrier wait``: block until containers have ended and print their exit codes, as
``podman wait`` does.

The wait is on the container's supervisor lock (held for the supervisor's whole life and
released once its cleanup is recorded), so nothing polls and no exit is missed.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._util._errors import CarrierError
from ._common import each, open_root

if TYPE_CHECKING:
    from .._state._records import Containers


def wait(*containers: str) -> int:
    """Wait until each container has ended (its supervisor is done) and print its exit code.

    A container with a restart policy ends when its supervisor gives up or is stopped. One
    that is missing is reported in one line and the others are still waited for; the exit
    code is 125 if any could not be.
    """
    import anyio

    from .._state._records import Containers
    from .._supervision._control import reconcile

    if not containers:
        raise CarrierError("wait needs at least one container: carrier wait NAME...")
    root = open_root()
    found = Containers(root)

    def one(ref: str) -> None:
        cid = found.resolve(ref)
        _until_released(found.supervisor_lock(cid))
        anyio.run(reconcile, root)  # a supervisor that was killed: record its end
        print(_exit_code(root.path, found, cid, ref), flush=True)

    return each(containers, one)


def _until_released(lock: Path) -> None:
    """Block until no supervisor holds the lock file *lock* (gone already counts)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    finally:
        os.close(fd)


def _exit_code(root_path: Path, found: Containers, cid: str, ref: str) -> int:
    """The exit code of container *cid*: from its record, or, once ``--rm`` removed it, from
    its supervisor's last event."""
    from .._supervision import _events
    from .._util._errors import NotFoundError

    try:
        record = found.load(cid)
    except NotFoundError:
        record = None
    if record is not None and record.exit_code is not None:
        return record.exit_code
    code = None
    for event in _events.stream(Path(root_path), follow=False):
        if event.get("id") == cid and event.get("type") in ("exited", "cleaned"):
            code = event.get("exit_code", code)
    if code is None:
        raise CarrierError(f"container {ref} ended without an exit code on record")
    return int(code)
