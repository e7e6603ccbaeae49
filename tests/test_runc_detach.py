"""The CLI's supervisors run ``runc run --detach`` as subreapers: the container's init is the
supervisor's own child, no runtime process stays resident, and the outcome, the stop and the
reconciliation after a killed supervisor are what they were (issue #15, ``_runtime/_reaper``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import alive, container_pid, wait_pidfd, wait_unsupervised
from test_network import HELPERS

import carrier


def _status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines())}


def _ppid(pid: int) -> int:
    return int(_status(pid)["PPid"])


def _children(parent: int) -> dict[int, tuple[str, str]]:
    """The children of *parent*: pid -> (state, comm)."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        comm = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace")
        state, ppid = stat[stat.rfind(b")") + 2:].split()[:2]
        if int(ppid) == parent:
            found[int(entry)] = (state.decode(), comm)
    return found


def _resident_runtimes() -> list[str]:
    """Command lines of this user's live ``runc ... run`` processes."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"runc") and b"run" in argv and alive(int(entry)):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


@pytest.mark.parametrize("helper", HELPERS)
def test_detached_container_is_the_supervisors_child(carrier: Carrier, image: str,
                                                     helper: str) -> None:
    """A detached container's init is its supervisor's child, no ``runc run`` stays resident,
    no zombie is left under the supervisor, and a kill of the init is its outcome."""
    res = carrier("run", "-d", "--name", "d", "--network", helper, image, "sleep", "1000")
    assert res.code == 0, res.err
    rec = carrier.record("d")
    supervisor = int(rec["supervisor_pid"])  # type: ignore[arg-type]
    init = container_pid(carrier, "d")
    assert _ppid(init) == supervisor
    assert _resident_runtimes() == []
    zombies = {pid: c for pid, c in _children(supervisor).items() if c[0] == "Z"}
    assert zombies == {}
    os.kill(init, signal.SIGKILL)
    wait_unsupervised(rec)
    rec = carrier.record("d")
    assert (rec["status"], rec["exit_code"], rec["reason"]) == ("exited", 137,
                                                                "killed: killed by SIGKILL")
    assert carrier("rm", "d").code == 0


def test_foreground_run_waits_on_the_adopted_init(carrier: Carrier, image: str) -> None:
    """A foreground run's container is its supervisor's child while it runs; its output and
    its exit code come back as before."""
    proc = carrier.popen("run", "-i", "--rm", "--name", "fg", image, "sh", "-c",
                         "echo hi; read x; exit 7", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "hi\n"  # the command runs
        rec = carrier.record("fg")
        init = container_pid(carrier, "fg")
        assert _ppid(init) == int(rec["supervisor_pid"])  # type: ignore[arg-type]
        assert _resident_runtimes() == []
        out, err = proc.communicate("\n", timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out) == (7, ""), err


def test_stop_of_an_adopted_init(carrier: Carrier, image: str) -> None:
    """``stop`` ends an adopted init gracefully and records the status its stop gave."""
    res = carrier("run", "-d", "--name", "s", image, "sh", "-c",
                  "trap 'exit 42' TERM; while :; do sleep 1; done")
    assert res.code == 0, res.err
    rec = carrier.record("s")
    assert carrier("stop", "-t", "30", "s").code == 0
    wait_unsupervised(rec)
    rec = carrier.record("s")
    assert (rec["status"], rec["exit_code"]) == ("exited", 42)
    assert carrier("rm", "s").code == 0


@pytest.mark.parametrize("helper", HELPERS)
def test_killed_supervisor_leaves_no_container(carrier: Carrier, image: str, helper: str) -> None:
    """When the supervisor is SIGKILLed, the adopted container does not outlive the next
    command: it is killed, reaped from the record, and nothing else stays."""
    res = carrier("run", "-d", "--name", "k", "--network", helper, image, "sleep", "1000")
    assert res.code == 0, res.err
    supervisor = int(carrier.record("k")["supervisor_pid"])  # type: ignore[arg-type]
    init = container_pid(carrier, "k")
    os.kill(supervisor, signal.SIGKILL)
    wait_pidfd(supervisor)
    carrier("ps", "-a")  # the next command reconciles what the killed supervisor left
    wait_pidfd(init)
    assert not alive(init)
    rec = carrier.record("k")
    assert (rec["status"], rec["exit_code"], str(rec["reason"]).split(":")[0]) == (
        "exited", 137, "supervisor-died")
    assert not any((carrier.root / "runtime").iterdir())
    assert carrier("rm", "k").code == 0


@pytest.mark.anyio
async def test_library_keeps_runc_run(cli: Carrier, image: str) -> None:
    """The library changes no process-wide state of its host: the process does not become a
    subreaper, and ``runc run`` stays the container's parent."""
    async with carrier.run(image, ["sleep", "100"], root=cli.root, stop_timeout=0.5) as c:
        init = container_pid(cli, c.name)
        runtime = _ppid(init)
        assert Path(f"/proc/{runtime}/comm").read_text().strip() == "runc"  # noqa: ASYNC240
        flag = ctypes.c_int(-1)
        assert ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0) == 0  # GET_SUBREAPER
        assert flag.value == 0


_ORPHANS = '''
import ctypes, os, select, sys
from carrier._runtime import _reaper
_reaper.become_subreaper()
own = os.fork()
if own == 0:
    os._exit(5)
hold_r, hold_w = os.pipe()
pid_r, pid_w = os.pipe()
mid = os.fork()
if mid == 0:
    grandchild = os.fork()
    if grandchild == 0:  # a runtime stage, orphaned: ends once its parent is gone
        ctypes.CDLL(None).prctl(15, b"runc:[1:CHILD]", 0, 0, 0)
        os.close(hold_w)
        os.read(hold_r, 1)
        os._exit(0)
    os.write(pid_w, str(grandchild).encode())
    os._exit(0)
os.close(pid_w)
orphan = int(os.read(pid_r, 32))
os.waitpid(mid, 0)  # the orphan is ours now
fd = os.pidfd_open(orphan)
os.close(hold_w)
assert select.select([fd], [], [], 30)[0], "the orphan did not end"
assert os.path.exists(f"/proc/{orphan}"), "a zombie until reaped"
reaped = _reaper.reap_orphans()
_, status = os.waitpid(own, 0)
print(reaped, os.waitstatus_to_exitcode(status), os.path.exists(f"/proc/{orphan}"))
'''


def test_orphaned_runtime_stages_are_reaped_and_no_status_is_stolen() -> None:
    """A subreaper reaps an orphaned runtime stage (``runc:[...]``) once it has ended, and
    leaves a child that has a waiter of its own alone (it keeps its exit status)."""
    res = subprocess.run([sys.executable, "-c", _ORPHANS], capture_output=True, text=True,
                         timeout=60)
    assert (res.returncode, res.stdout) == (0, "1 5 False\n"), res.stderr


_CUT_SHORT = '''
import os, sys
from pathlib import Path
import anyio
import carrier
import carrier._library._run as library
from carrier._runtime import _reaper

_reaper.become_subreaper()
scopes = []
supervise = library.supervise
library.supervise = lambda *a, **kw: supervise(*a, on_launch=lambda: scopes[0].cancel(), **kw)

async def main() -> None:
    with anyio.CancelScope() as scope:
        scopes.append(scope)
        async with carrier.run("busybox", ["sleep", "100"], root=Path(sys.argv[1]),
                               network="none", stop_timeout=0.5):
            await anyio.sleep_forever()
    assert scope.cancelled_caught

anyio.run(main)
me = str(os.getpid())
children = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()
    except OSError:
        continue
    state, ppid = stat[stat.rfind(b")") + 2:].split()[:2]
    if ppid.decode() == me:
        children.append((pid, state.decode(), stat[stat.find(b"(") + 1:stat.rfind(b")")].decode()))
print(children)
'''


def test_start_cut_short_while_the_runtime_starts(carrier: Carrier, image: str) -> None:
    """A start cancelled while ``runc run --detach`` is still starting stops the init it
    leaves and reaps it: no child, zombie or runtime state stays."""
    res = subprocess.run([sys.executable, "-c", _CUT_SHORT, str(carrier.root)],
                         capture_output=True, text=True, timeout=120)
    assert (res.returncode, res.stdout) == (0, "[]\n"), res.stderr
    assert not any((carrier.root / "runtime").iterdir())


_FLAKY_RUNTIME = '''#!/bin/sh
# runc, except that its first FAILS "VERB"s die the way runc 1.1's init rarely does
log=; prev=; is_run=
for a; do
  [ "$prev" = --log ] && log=$a
  [ "$a" = VERB ] && is_run=1
  prev=$a
done
if [ -n "$is_run" ]; then
  echo run >> COUNT
  if [ "$(wc -l < COUNT)" -le FAILS ]; then
    msg="unable to start container process: waiting for init preliminary setup"
    msg="$msg: read init-p: connection reset by peer"
    printf '{"level":"error","msg":"runc run failed: %s"}\\n' "$msg" >> "$log"
    echo "runc run failed: $msg" >&2  # runc says it on its stderr too: the container's pipe
    exit 1
  fi
fi
exec RUNC "$@"
'''


def _flaky_runtime(tmp_path: Path, fails: int, verb: str = "run") -> tuple[Path, Path]:
    """A runtime whose first *fails* starts (``run``, or ``exec``) fail before creating
    anything; and its count of them."""
    count = tmp_path / "runs"
    script = tmp_path / "flaky-runc"
    runc = shutil.which("runc")
    assert runc is not None
    script.write_text(_FLAKY_RUNTIME.replace("COUNT", str(count)).replace("FAILS", str(fails))
                      .replace("RUNC", runc).replace("VERB", verb))
    script.chmod(0o755)
    return script, count


@pytest.mark.parametrize("detach", [[], ["-d"]], ids=["foreground", "detached"])
def test_runtime_dying_before_its_init_spoke_is_tried_again(
    carrier: Carrier, image: str, tmp_path: Path, detach: list[str]
) -> None:
    """runc's init dying before its first message (seen about once in 5000 starts) costs one
    more try, not the container: the command runs and its output is whole."""
    runtime, count = _flaky_runtime(tmp_path, 1)
    res = carrier("run", *detach, "--name", "retried", "--runtime", str(runtime), image,
                  "sh", "-c", "echo hello; echo oops >&2")
    assert res.code == 0, res.err
    assert "init-p" not in res.err  # runc's words about the failed try are not the container's
    if detach:
        assert carrier("wait", "retried").out.strip() == "0"
    logs = carrier("logs", "retried")
    assert (logs.out, logs.err) == ("hello\n", "oops\n")
    assert count.read_text().count("run") == 2
    assert carrier("rm", "retried").code == 0


@pytest.mark.anyio
async def test_library_tries_a_dying_runtime_again(cli: Carrier, image: str,
                                                   tmp_path: Path) -> None:
    """The library's foreground ``runc run`` gets the same one more try."""
    runtime, count = _flaky_runtime(tmp_path, 1)
    async with carrier.run(image, ["sleep", "100"], root=cli.root, runtime=str(runtime),
                           stop_timeout=0.5) as c:
        assert (await c.exec(["echo", "hello"])).stdout == b"hello\n"
        assert count.read_text().count("run") == 2


def test_runtime_failing_twice_is_one_line_and_125(carrier: Carrier, image: str,
                                                   tmp_path: Path) -> None:
    """Only one more try: a runtime that fails that way again fails the run with its message."""
    runtime, count = _flaky_runtime(tmp_path, 5)
    res = carrier("run", "--rm", "--runtime", str(runtime), image, "true")
    assert res.code == 125
    assert "read init-p: connection reset by peer" in res.err.strip().splitlines()[-1]
    assert count.read_text().count("run") == 2


def test_exec_whose_runtime_dies_before_its_init_spoke_is_tried_again(
        carrier: Carrier, image: str, tmp_path: Path) -> None:
    """``exec`` gets the same one more try when runc's init dies before the command ran: the
    command runs once, its output whole, its code the command's (it failed a full run)."""
    runtime, count = _flaky_runtime(tmp_path, 1, verb="exec")
    assert carrier("run", "-d", "--name", "e", "--runtime", str(runtime), image,
                   "sleep", "1000").code == 0
    res = carrier("exec", "e", "sh", "-c", "echo hello; exit 3")
    assert (res.code, res.out) == (3, "hello\n"), res.err
    assert "trying once more" in res.err
    assert count.read_text().count("run") == 2  # the wrapper counts each exec as a line "run"
    assert carrier("rm", "-f", "e").code == 0
