"""A foreground ``run --rm`` reports the container's exit as soon as nothing the caller can
observe is left (its output delivered, the container removed, its name free), before the
network helper is stopped; the helper is still gone soon after. Rootless, real, both helpers."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time

import pytest
from conftest import Carrier
from helpers import helper_pid, wait_pidfd
from test_fastpath import _server

pytestmark = pytest.mark.rootless
HELPERS = ["pasta", "slirp4netns"]


def _running(carrier: Carrier, name: str, bound: float = 20) -> None:
    """Bounded poll until *name*'s record says it runs (written by another process)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        res = carrier("info", name)
        if res.code == 0 and '"running"' in res.out:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} did not start")


@pytest.mark.parametrize("helper", HELPERS)
def test_exit_reported_before_the_helper_stops(carrier: Carrier, image: str, helper: str) -> None:
    """With its network helper frozen, a ``run --rm`` still returns the container's code and
    output while the helper lives; by then ``ps -a`` is empty and the name is free again, and
    the helper is gone once it can run."""
    carrier("ps")
    _server()  # the run goes through a fork of the server, which can report before it ends
    proc = carrier.popen("run", "--rm", "-i", "--name", "x", "--network", helper, image,
                         "sh", "-c", "read line; echo \"got $line\"; exit 7",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pidfd = -1
    try:
        _running(carrier, "x")
        pid = helper_pid(carrier, "x")
        pidfd = os.pidfd_open(pid)
        os.kill(pid, signal.SIGSTOP)  # its stop (SIGTERM, a guard, SIGKILL) cannot finish now
        out, err = proc.communicate("hello\n", timeout=30)
        assert (proc.returncode, out) == (7, "got hello\n"), err
        assert not select.select([pidfd], [], [], 0)[0], "the exit came after the helper ended"
        assert carrier("ps", "-a", "-q").out == ""
        again = carrier("run", "--rm", "--name", "x", "--network", "none", image, "echo", "again")
        assert (again.code, again.out) == (0, "again\n"), again
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):  # already ended (before the fix)
                signal.pidfd_send_signal(pidfd, signal.SIGCONT)
            os.close(pidfd)
            wait_pidfd(pid)


@pytest.mark.parametrize("helper", HELPERS)
def test_rm_name_reused_back_to_back(carrier: Carrier, image: str, helper: str) -> None:
    """``run --rm --name x`` twice in a row works, each with its output, and leaves nothing."""
    for word in ("one", "two"):
        res = carrier("run", "--rm", "--name", "x", "--network", helper, image, "echo", word)
        assert (res.code, res.out) == (0, f"{word}\n"), res
    assert carrier("ps", "-a", "-q").out == ""
