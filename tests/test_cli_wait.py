"""``wait`` on a container that was created and never started: as Podman, it blocks until the
container has run and ended, then prints its exit code (rootless, real containers)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import Carrier


def watching(pid: int, bound: float = 20) -> None:
    """Return once process *pid* has an inotify descriptor open (its wait is set up); fail
    if it ends first or *bound* seconds pass."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            fds = [os.readlink(p) for p in Path(f"/proc/{pid}/fd").iterdir()]
        except (FileNotFoundError, ProcessLookupError):
            fds = []
        if "anon_inode:inotify" in fds:
            return
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] \
            if Path(f"/proc/{pid}/stat").exists() else "X"
        assert state not in ("Z", "X"), "the wait ended before the container ran"
        time.sleep(0.01)
    raise AssertionError(f"process {pid} set up no inotify watch in {bound} s")


def waiter(carrier: Carrier, *names: str) -> subprocess.Popen[str]:
    """``carrier wait NAMES`` started in this process's child (no fork server)."""
    carrier.env["CARRIER_FORK_SERVER"] = "0"
    return carrier.popen("wait", *names, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_wait_blocks_on_a_created_container_until_it_ran(carrier: Carrier, image: str) -> None:
    """wait on a created container blocks (it watches, and has printed nothing) until start
    runs it, then prints the exit code of that run and exits 0."""
    assert carrier("create", "--name", "later", image, "sh", "-c", "exit 7").code == 0
    proc = waiter(carrier, "later")
    try:
        watching(proc.pid)
        assert proc.poll() is None  # still waiting: nothing has run
        assert carrier("start", "later").code == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (0, "7\n"), err
    assert carrier("rm", "later").code == 0


def test_wait_on_a_created_container_that_is_removed(carrier: Carrier, image: str) -> None:
    """A created container removed while wait blocks on it is one line, exit 125."""
    assert carrier("create", "--name", "gone", image, "true").code == 0
    proc = waiter(carrier, "gone")
    try:
        watching(proc.pid)
        assert carrier("rm", "gone").code == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (125, "")
    assert err == "carrier: container gone was removed before it ran\n"
