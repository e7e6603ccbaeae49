"""The OCI runtime (runc by default, crun or any compatible binary by choice).

``runc run`` either stays in the foreground as our child, so its exit status is the
container's (the code, or 128+N after signal N), or, with *detach* in a subreaper
(``_reaper``), exits once the command runs and leaves the container's init to us. Its own
messages go to a log file, never into the container's output, and a failure to start is read
back from that log.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .._util import _process
from .._util._errors import CarrierError, RuntimeFailure

HEADROOM = 32  # tasks a start needs: holder, helper, nsenter, runc and its Go threads, ...


def check_process_headroom(needed: int = HEADROOM) -> None:
    """Refuse, in one line, a start that this user's process limit (``ulimit -u``) would cut
    short: runc then dies mid-start with a page of Go runtime errors, and no clear reason."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft == resource.RLIM_INFINITY or os.geteuid() == 0:
        return
    if soft - _threads_on_host() >= needed:  # this user's count is at most that: no /proc walk
        return
    uid = str(os.getuid())
    used = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if fields.get("Uid", "").split()[:1] == [uid]:
            used += int(fields.get("Threads", "1"))
    if soft - used < needed:
        raise RuntimeFailure(f"this user may run {soft} processes (ulimit -u) and runs {used}: a "
                             f"container needs about {needed} more; raise the limit or end some")


def _threads_on_host() -> int:
    """Every thread on the machine, from ``/proc/loadavg`` (one read, where counting this
    user's walks all of ``/proc``: ~10 ms with a few hundred processes); a huge number if it
    cannot be read, so that the exact count is taken."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[1])
    except (OSError, IndexError, ValueError):
        return 1 << 62


def resolve(name: str) -> str:
    """The runtime binary for ``--runtime NAME|PATH``."""
    path = shutil.which(name) if "/" not in name else name
    if path is None or not Path(path).is_file():
        raise CarrierError(f"OCI runtime {name!r} not found (install it, e.g. apt install {name})")
    return path


@dataclass(frozen=True)
class Runtime:
    """One OCI runtime binary with its state directory."""

    binary: str
    state_dir: Path

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.state_dir), *args]

    def run(self, cid: str, bundle: Path, *, stdin: int | IO[Any] | None,
            stdout: int | IO[Any] | None, stderr: int | IO[Any] | None,
            inside: Sequence[str] = (), controlling_tty: bool = False,
            detach: bool = False) -> _process.Child:
        """Start ``runtime run`` for the bundle in its own session (signals come from us).

        *inside* is a command to run it through (``nsenter`` into the holder, for
        fuse-overlayfs); kill, delete and state always run from outside, so they work once the
        holder is gone. With *controlling_tty*, its standard input (a terminal) becomes its
        controlling terminal, which runc needs to relay a container's (``_console``).
        With *detach* (no terminal), the runtime hands its standard streams to the container
        and exits once the command runs; the init is then reparented to our subreaper.
        """
        argv = [*inside, *self._argv("--log", str(bundle / "runtime.log"), "--log-format", "json",
                                     "run", *(["--detach"] if detach else []), "--bundle",
                                     str(bundle), "--pid-file", str(bundle / "container.pid"),
                                     cid)]
        return _process.spawn(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                              controlling_tty=controlling_tty)

    async def kill(self, cid: str, signal: str) -> None:
        """Deliver *signal* to the container; a container already gone is not an error."""
        await _process.run(self._argv("kill", cid, signal), check=False)

    async def delete(self, cid: str) -> None:
        """Remove the runtime's state of the container, killing it if it still runs."""
        await _process.run(self._argv("delete", "--force", cid), check=False)

    async def running(self, cid: str) -> bool:
        """Whether the runtime says the container's init is still running."""
        code, out, _ = await _process.run(self._argv("state", cid), check=False)
        try:
            return code == 0 and json.loads(out).get("status") == "running"
        except ValueError:
            return False


# runc 1.1's init can die before it says anything to its parent (about once in 5000 starts
# here, never reproduced on demand); nothing of the container exists yet, so a second try is safe.
_TRANSIENT = re.compile(r"waiting for init preliminary setup: read init-p: connection reset by peer")


def transient_failure(log: Path) -> bool:
    """Whether the runtime's log shows it failed before creating anything, in a way that a
    second attempt can succeed (runc's init died before its first message)."""
    try:
        return _TRANSIENT.search(log.read_text(errors="replace")) is not None
    except OSError:
        return False


_NOT_FOUND = re.compile(r"(no such file or directory|not found)", re.IGNORECASE)
_NOT_EXEC = re.compile(r"permission denied|exec format error|is a directory", re.IGNORECASE)


def start_failure(log: Path) -> tuple[int, str] | None:
    """If the runtime's log shows the command could not start, Docker's code and the message.

    127: the command was not found; 126: it could not be executed; 125: anything else.
    """
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") not in ("error", "fatal"):
            continue
        msg = str(entry.get("msg", ""))
        if "exec" in msg and _NOT_FOUND.search(msg):
            return 127, msg
        if "exec" in msg and _NOT_EXEC.search(msg):
            return 126, msg
        return 125, msg
    return None
