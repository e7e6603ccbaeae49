"""``carrier pause`` and ``unpause``: freeze and thaw a running container's processes with the
OCI runtime (the cgroup freezer), as ``podman pause`` does.

The freezer is a cgroup's: a rootless container has a cgroup of its own only where cgroup v2
is delegated to the user. On a host without that (cgroup v1 or hybrid, as these machines),
pausing is refused in one line that says so, and the container keeps running.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._util._errors import CarrierError, ConflictError
from ._common import each, open_root

CGROUP_FS = Path("/sys/fs/cgroup")


def pause(*containers: str) -> int:
    """Pause running containers: freeze every process in them (the cgroup freezer).

    Each container is paused on its own: one that is missing, not running or cannot be frozen
    is reported in one line, keeps running, and the exit code is 125.
    """
    return _toggle(containers, "pause")


def unpause(*containers: str) -> int:
    """Unpause paused containers: thaw their processes."""
    return _toggle(containers, "resume")


def _toggle(containers: tuple[str, ...], action: str) -> int:
    import anyio

    from .._runtime._oci import resolve
    from .._state._records import Containers, Status
    from .._util._process import run

    verb = "pause" if action == "pause" else "unpause"
    if not containers:
        raise CarrierError(f"{verb} needs at least one container: carrier {verb} NAME...")
    root = open_root()
    found = Containers(root)

    def one(ref: str) -> None:
        record = found.find(ref)
        if record.status is not Status.RUNNING or not found.supervisor_alive(record.id):
            raise ConflictError(f"can only {verb} running containers: {ref} is {record.status}")
        paused = record.container_pid is not None and is_paused(record.container_pid)
        if paused == (action == "pause"):
            raise ConflictError(f"{ref} is {'already paused' if paused else 'not paused'}")
        why = freezer_unreachable()
        if why is not None:
            raise CarrierError(f"cannot {verb} {ref}: {why}; it keeps running")
        argv = [resolve(record.spec.runtime), "--root", str(root.runtime), action, record.id]
        code, _, err = anyio.run(lambda: run(argv, check=False))
        if code != 0:
            raise CarrierError(f"cannot {verb} {ref}: {_runtime_error(err)}")
        print(ref)

    return each(containers, one)


def freezer_unreachable() -> str | None:
    """Why this user's containers have no cgroup freezer, or None where they may have one."""
    if os.geteuid() == 0:
        return None
    if not (CGROUP_FS / "cgroup.controllers").exists():
        return ("the cgroup freezer is not reachable: this host has cgroup v1 (or hybrid) "
                "hierarchies, where a rootless container gets no cgroup of its own (only a "
                "cgroup v2 tree delegated to the user gives it one)")
    return None


def _runtime_error(err: bytes) -> str:
    """The runtime's own error line (runc logs ``level=error msg="..."``), else its last line."""
    text = err.decode(errors="replace")
    messages = re.findall(r'level=error msg="((?:[^"\\]|\\.)*)"', text)
    if messages:
        return str(messages[-1])
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "the runtime failed without a message"


def is_paused(pid: int) -> bool:
    """Whether the process *pid* is in a frozen cgroup (v1 freezer or v2 ``cgroup.freeze``)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        _, controllers, path = line.split(":", 2)
        try:
            if "freezer" in controllers.split(","):
                state = (CGROUP_FS / "freezer" / path.lstrip("/") / "freezer.state").read_text()
                return state.strip() in ("FROZEN", "FREEZING")
            if controllers == "" and (CGROUP_FS / "cgroup.controllers").exists():
                events = (CGROUP_FS / path.lstrip("/") / "cgroup.events").read_text()
                return "frozen 1" in events.splitlines()
        except OSError:
            continue
    return False

