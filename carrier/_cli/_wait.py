"""``carrier wait``: block until containers have ended and print their exit codes, as
``podman wait`` does.

The wait is on the container's supervisor lock (held for the supervisor's whole life and
released once its cleanup is recorded), so nothing polls and no exit is missed. A container
that was created and never started has no supervisor yet: as Podman, the wait first blocks
until one starts it, woken by inotify on the container's directory.
"""

from __future__ import annotations

import fcntl
import os
import time
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
        _until_started(found, cid, ref)
        _until_released(found.supervisor_lock(cid))
        anyio.run(reconcile, root)  # a supervisor that was killed: record its end
        print(_exit_code(root.path, found, cid, ref), flush=True)

    return each(containers, one)


def _until_started(found: Containers, cid: str, ref: str) -> None:
    """Block while container *cid* is ``created`` and no supervisor holds it. Each wake-up is
    an event in its directory (its record rewritten by rename, a file created, the directory
    removed or moved); where no inotify instance is left, a 0.1 s poll of the same test."""
    from .._util._inotify import (
        IN_CREATE,
        IN_DELETE_SELF,
        IN_MOVE_SELF,
        IN_MOVED_TO,
        watch_directory,
    )

    # Not IN_CLOSE_WRITE or IN_OPEN: the lock probe below opens the lock file, and would wake
    # this loop itself.
    mask = IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF
    fd = watch_directory(found.dir(cid), mask)
    try:
        while _waiting_to_start(found, cid, ref):
            if fd is None:
                time.sleep(0.1)
            else:
                os.read(fd, 65536)  # blocks until the next event
    finally:
        if fd is not None:
            os.close(fd)


def _waiting_to_start(found: Containers, cid: str, ref: str) -> bool:
    """Whether *cid* is still created and unstarted; a container removed meanwhile is an
    error, as Podman's."""
    from .._state._records import Status
    from .._state._schema import Damaged
    from .._util._errors import NotFoundError

    if not found.dir(cid).is_dir():
        raise NotFoundError(f"container {ref} was removed before it ran")
    if found.supervisor_alive(cid):
        return False
    try:
        return found.load(cid).status is Status.CREATED
    except (NotFoundError, Damaged):
        return False


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
