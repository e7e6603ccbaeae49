"""The fault matrix: kill each member of a container's group in turn, for both helpers.

Each case has its expected outcome (exit code and reason), and afterwards nothing is left:
no process (the ``carrier`` fixture checks every process of this user), no runtime state, no
helper PID file or API socket, no exec scratch files.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import container_pid, helper_pid, pid_of, wait_pidfd, wait_unsupervised
from test_network import HELPERS

CASES = {
    "container": (137, "killed"),
    "helper": (125, "helper-exited"),
    "holder": (125, "holder-exited"),
    "health-command": (137, "unhealthy"),
    "supervisor": (137, "supervisor-died"),
    "supervisor-sigterm": (137, "stop-requested"),
}


@pytest.mark.parametrize("helper", HELPERS)
@pytest.mark.parametrize("member", list(CASES))
def test_kill_each_member(carrier: Carrier, image: str, helper: str, member: str) -> None:
    """Killing any member ends the whole group with that member's reason; nothing leaks."""
    res = carrier("run", "-d", "--name", "f", "--network", helper, "--stop-timeout", "0.5",
                  "--health-cmd", "sleep 3600", "--health-interval", "100ms",
                  "--health-timeout", "1h", "--health-retries", "1", "--health-on-failure", "kill",
                  image, "sleep", "1000")
    assert res.code == 0, res.err
    rec = carrier.record("f")
    cdir = Path(str(rec["Dir"]))
    supervisor = int(rec["supervisor_pid"])  # type: ignore[arg-type]
    helper_process = helper_pid(carrier, "f")
    target = {
        "container": lambda: container_pid(carrier, "f"),
        "helper": lambda: helper_process,
        "holder": lambda: int(rec["holder_pid"]),  # type: ignore[arg-type]
        "health-command": lambda: pid_of(b"sleep\x003600\x00"),
        "supervisor": lambda: supervisor,
        "supervisor-sigterm": lambda: supervisor,
    }[member]()
    os.kill(target, signal.SIGTERM if member == "supervisor-sigterm" else signal.SIGKILL)
    wait_unsupervised(rec)
    carrier("ps", "-a")  # the next command reconciles whatever a killed supervisor left
    wait_pidfd(helper_process)
    rec = carrier.record("f")
    assert (rec["status"], rec["exit_code"], str(rec["reason"]).split(":")[0]) == (
        "exited", *CASES[member]
    )
    assert not (cdir / "network.pid").exists()
    assert not list(cdir.glob("exec-*"))
    assert not any((carrier.root / "runtime").iterdir())
    run_dir = Path(os.environ.get("XDG_RUNTIME_DIR", "")) / "carrier" \
        if os.environ.get("XDG_RUNTIME_DIR") else carrier.root / "run"
    assert not list(run_dir.glob(f"{str(rec['id'])[:16]}*"))
    assert carrier("rm", "f").code == 0


@pytest.mark.parametrize("driver", ["overlay", "fuse-overlayfs", "copy"])
@pytest.mark.parametrize("member", ["container", "holder", "supervisor"])
def test_kill_each_member_with_each_storage_driver(carrier: Carrier, image: str, driver: str,
                                                   member: str) -> None:
    """The same with each storage driver: fuse-overlayfs and the container end with the group
    (also when the holder or the supervisor dies), and nothing is left (the fixture checks
    every process of this user; no mount can exist outside the holder's namespace)."""
    res = carrier("run", "-d", "--name", "s", "--storage-driver", driver, "--stop-timeout", "0.5",
                  image, "sleep", "1000")
    assert res.code == 0, res.err
    rec = carrier.record("s")
    cdir = Path(str(rec["Dir"]))
    supervisor = int(rec["supervisor_pid"])  # type: ignore[arg-type]
    assert (cdir / "storage.pid").exists() == (driver == "fuse-overlayfs")
    target = {
        "container": lambda: container_pid(carrier, "s"),
        "holder": lambda: int(rec["holder_pid"]),  # type: ignore[arg-type]
        "supervisor": lambda: supervisor,
    }[member]()
    os.kill(target, signal.SIGKILL)
    wait_unsupervised(rec)
    carrier("ps", "-a")  # reconciles what a killed supervisor left
    rec = carrier.record("s")
    assert (rec["status"], rec["exit_code"], str(rec["reason"]).split(":")[0]) == (
        "exited", *CASES[member]
    )
    assert not (cdir / "storage.pid").exists()
    assert not any((carrier.root / "runtime").iterdir())
    assert carrier("rm", "s").code == 0
