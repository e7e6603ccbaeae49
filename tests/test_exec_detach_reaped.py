"""exec -d runs through the container's supervisor, which adopts and reaps the command when it
ends: no zombie stays (before, it was orphaned to the host's init, which does not reap here)."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import Carrier


def _zombies(carrier: Carrier, name: str) -> list[str]:
    """The container's processes in state Z, as its own ``ps`` shows them."""
    res = carrier("exec", name, "ps", "-o", "pid,stat,args")
    assert res.code == 0, res.err
    return [line for line in res.out.splitlines()[1:] if line.split()[1].startswith("Z")]


def _host_pids(args: bytes) -> list[tuple[int, int]]:
    """(PID, parent PID) of each host process whose command line is *args* (NUL-separated)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == args:
                    stat = (entry / "stat").read_text()
                    found.append((int(entry.name), int(stat[stat.rfind(")") + 2:].split()[1])))
            except (OSError, ValueError):
                continue
    return found


def test_exec_d_command_is_the_supervisors(carrier: Carrier, image: str) -> None:
    """The command exec -d started is adopted by the container's supervisor (its parent on the
    host), which reaps it when it ends, rather than orphaned to the host's init."""
    assert carrier("run", "-d", "--name", "box", "--network", "none", image,
                   "sleep", "1000").code == 0
    assert carrier("exec", "-d", "box", "sleep", "4545").code == 0
    supervisor = carrier.record("box")["supervisor_pid"]
    ((pid, parent),) = _host_pids(b"sleep\x004545\x00")
    assert parent == supervisor
    assert carrier("exec", "box", "kill", "-9", "-1").code in (0, 1)  # the sleep 4545 ends
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists():  # bounded poll: gone once reaped, not a zombie
        assert time.monotonic() < deadline, (Path(f"/proc/{pid}/stat").read_text())
        time.sleep(0.05)
    assert carrier("rm", "-f", "box").code == 0


def test_ended_exec_d_command_is_reaped(carrier: Carrier, image: str) -> None:
    """Commands started with exec -d that end are reaped: each one's PID leaves the container's
    process table (a ``<defunct>`` would stay in it), though its PID 1 (sleep) reaps nothing."""
    assert carrier("run", "-d", "--name", "box", "--network", "none", image,
                   "sleep", "1000").code == 0
    for n in range(3):  # each writes its PID first, so the check below knows whom to look for
        assert carrier("exec", "-d", "box", "sh", "-c", f"echo $$ > /tmp/pid{n}; exit 3").code == 0
    pids: set[str] = set()
    deadline = time.monotonic() + 20
    while len(pids) < 3:  # bounded poll: the files appear once the commands have run
        assert time.monotonic() < deadline, "the exec -d commands did not run"
        res = carrier("exec", "box", "sh", "-c", "cat /tmp/pid0 /tmp/pid1 /tmp/pid2 2>/dev/null")
        pids = set(res.out.split())
        time.sleep(0.05)
    while left := [line for line in carrier("exec", "box", "ps", "-o", "pid,stat").out.splitlines()
                   if line.split()[0] in pids]:  # bounded poll: the reaping is another process's
        assert time.monotonic() < deadline, f"not reaped: {left}"
        time.sleep(0.1)
    assert not _zombies(carrier, "box")
    assert carrier("rm", "-f", "box").code == 0


def test_exec_d_still_runs_and_fails_as_before(carrier: Carrier, image: str) -> None:
    """Through the supervisor, exec -d still returns at once with its command running inside,
    127 for a missing command, and one line, 125, for an unknown user."""
    assert carrier("run", "-d", "--name", "box", "--network", "none", image,
                   "sleep", "1000").code == 0
    assert carrier("exec", "-d", "box", "sleep", "4343").code == 0
    res = carrier("exec", "box", "ps", "-o", "args")
    assert "sleep 4343" in res.out.splitlines(), res.out
    assert carrier("exec", "-d", "box", "/nope").code == 127
    res = carrier("exec", "-d", "-u", "nobody-here", "box", "true")
    assert res.code == 125, res
    assert len(res.err.splitlines()) == 1, res
    assert res.err.startswith("carrier: "), res
    assert carrier("rm", "-f", "box").code == 0
