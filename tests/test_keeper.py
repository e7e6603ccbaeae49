"""The keeper (issue #15): one resident process of this user supervises every detached
container, each in a task group of its own. One container's end leaves the others running;
SIGTERM stops them all; a keeper SIGKILLed at random moments leaves nothing behind once the
next command has reconciled, and the next ``run -d`` starts a new one; it ends when idle."""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Carrier, still_alive, user_processes
from helpers import alive, container_pid, helper_pid, own_supervisor, wait_pidfd, wait_unsupervised
from test_network import HELPERS

from carrier._cli._keeper import TITLE

pytestmark = pytest.mark.rootless
SEED = 20261201  # fixed, so that a failure replays the same moments
# A PID 1 that ends at SIGTERM with code 42 (busybox sleep as PID 1 would ignore it).
TRAPPED = ("sh", "-c", "trap 'exit 42' TERM; sleep 1000 & wait")


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])


def _keeper_of(carrier: Carrier, name: str) -> int:
    """The keeper that supervises *name* (its record's supervisor), checked by its title."""
    pid = int(carrier.record(name)["supervisor_pid"])  # type: ignore[arg-type]
    assert _cmdline(pid).startswith(TITLE), _cmdline(pid)
    return pid


def _stat(pid: int) -> list[str]:
    """``/proc/PID/stat`` after the command name (state first), or [] once the PID is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return []


def _socket_of(keeper: int) -> Path:
    """The socket a keeper listens on (its title names it)."""
    return Path(_cmdline(keeper).split()[1])


def _detached(carrier: Carrier, image: str, name: str, *command: str,
              network: str = "none") -> None:
    res = carrier("run", "-d", "--name", name, "--network", network, "--stop-timeout", "5",
                  image, *(command or ("sleep", "1000")))
    assert res.code == 0, res.err


def test_detached_containers_share_one_keeper(carrier: Carrier, image: str) -> None:
    """The detached containers of one caller are groups in one keeper process, each one's init
    that keeper's child, and the keeper is no ``carrier`` command's child."""
    for name in ("a", "b", "c"):
        _detached(carrier, image, name)
    keepers = {_keeper_of(carrier, name) for name in ("a", "b", "c")}
    assert len(keepers) == 1, keepers
    keeper = keepers.pop()
    assert [_ppid(container_pid(carrier, name)) for name in ("a", "b", "c")] == [keeper] * 3
    assert "carrier" not in _cmdline(_ppid(keeper)).split()[:1]
    assert carrier("rm", "-f", "a", "b", "c").code == 0


@pytest.mark.parametrize("helper", HELPERS)
def test_one_groups_end_leaves_the_others(carrier: Carrier, image: str, helper: str) -> None:
    """Killing one container's network helper ends that container's group alone: the other
    runs on, in the same keeper, and still answers."""
    _detached(carrier, image, "a", network=helper)
    _detached(carrier, image, "b", network=helper)
    keeper = _keeper_of(carrier, "a")
    other = container_pid(carrier, "b")
    os.kill(helper_pid(carrier, "a"), signal.SIGKILL)
    assert carrier("wait", "a").out.split() == ["125"]
    assert str(carrier.record("a")["reason"]).startswith("helper-exited")
    assert carrier.record("b")["status"] == "running"
    assert alive(other)
    assert alive(keeper)
    assert _keeper_of(carrier, "b") == keeper
    assert carrier("exec", "b", "true").code == 0
    assert carrier("rm", "-f", "a", "b").code == 0


def test_sigterm_stops_every_container_then_the_keeper(carrier: Carrier, image: str) -> None:
    """SIGTERM to the keeper stops each container it keeps gracefully (their TERM traps run),
    and then the keeper ends."""
    _detached(carrier, image, "a", *TRAPPED)
    _detached(carrier, image, "b", *TRAPPED)
    keeper = _keeper_of(carrier, "a")
    records = [carrier.record(name) for name in ("a", "b")]
    os.kill(keeper, signal.SIGTERM)
    wait_pidfd(keeper)
    for rec in records:
        wait_unsupervised(rec)
    for name in ("a", "b"):
        rec = carrier.record(name)
        assert (rec["status"], rec["exit_code"], rec["reason"]) == ("exited", 42, "stop-requested")
    assert carrier("rm", "a", "b").code == 0


# A runc that says on the fifo ARRIVED that it was asked to run a container, and runs it
# only once the fifo GO has been opened and closed.
_HELD_RUNTIME = """#!/bin/sh
for a; do
  if [ "$a" = run ]; then echo here > ARRIVED; cat GO > /dev/null; break; fi
done
exec RUNC "$@"
"""


@pytest.mark.parametrize("own", [False, True], ids=["keeper", "own-supervisor"])
def test_sigterm_while_a_container_starts_stops_it_once_up(
    carrier: Carrier, image: str, tmp_path: Path, own: bool
) -> None:
    """A SIGTERM that reaches the supervision while the runtime is still starting the
    container is not lost: the container is stopped as soon as it is up."""
    arrived, go = tmp_path / "arrived", tmp_path / "go"
    os.mkfifo(arrived)
    os.mkfifo(go)
    runtime = tmp_path / "held-runc"
    runc = shutil.which("runc")
    assert runc is not None
    runtime.write_text(_HELD_RUNTIME.replace("ARRIVED", str(arrived)).replace("GO", str(go))
                       .replace("RUNC", runc))
    runtime.chmod(0o755)
    reader = os.open(arrived, os.O_RDONLY | os.O_NONBLOCK)  # POLLIN once the runtime writes
    proc: subprocess.Popen[str] | None = None
    try:
        with own_supervisor(carrier, own):
            proc = carrier.popen("run", "-d", "--name", "t", "--network", "none",
                                 "--runtime", str(runtime), "--stop-timeout", "5", image,
                                 *TRAPPED, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        poller = select.poll()
        poller.register(reader, select.POLLIN)
        assert poller.poll(30_000), "the runtime was never asked to run the container"
        supervisor = int(carrier.record("t")["supervisor_pid"])  # type: ignore[arg-type]
        os.kill(supervisor, signal.SIGTERM)
        os.close(os.open(go, os.O_WRONLY))  # the runtime goes on
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        rec = carrier.record("t")
        wait_unsupervised(rec)
        rec = carrier.record("t")
        # 42: its trap ran; 137: the stop came before sh had set the trap (a namespace's init
        # ignores an unhandled SIGTERM), so the stop's timeout killed it. Stopped either way.
        assert (rec["status"], rec["reason"]) == ("exited", "stop-requested")
        assert rec["exit_code"] in (42, 137)
    finally:
        os.close(reader)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert carrier("rm", "t").code == 0


def test_idle_exit_and_restart_on_demand(carrier: Carrier, image: str) -> None:
    """A keeper with no container left ends after its idle time and removes its socket; the
    next ``run -d`` starts a new keeper."""
    carrier.env["CARRIER_KEEPER_IDLE"] = "1"
    _detached(carrier, image, "a")
    keeper = _keeper_of(carrier, "a")
    path = _socket_of(keeper)
    assert path.exists()
    assert carrier("rm", "-f", "a").code == 0
    wait_pidfd(keeper)
    assert not path.exists()
    _detached(carrier, image, "b")
    again = _keeper_of(carrier, "b")
    assert again != keeper
    assert _socket_of(again) == path
    assert carrier("rm", "-f", "b").code == 0


def test_keeper_without_a_fork_server(carrier: Carrier, image: str) -> None:
    """With no fork server the command starts the keeper as a new interpreter, which logs as
    the command was told; the container runs under it as under any keeper."""
    carrier.env["CARRIER_FORK_SERVER"] = "0"
    res = carrier("--log-level", "info", "run", "-d", "--name", "a", "--network", "none", image,
                  "sleep", "1000")
    assert res.code == 0, res.err
    keeper = _keeper_of(carrier, "a")
    assert _ppid(container_pid(carrier, "a")) == keeper
    log = Path(str(carrier.record("a")["Dir"])) / "supervisor.log"
    assert "container.started" in log.read_text()
    assert carrier("rm", "-f", "a").code == 0


_KNOCK = '''
import array, json, os, pickle, socket, sys
conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
conn.connect(sys.argv[1])
r, w = os.pipe()
work = pickle.dumps((print, ())).decode("latin-1")  # well formed: only the check refuses it
conn.settimeout(30)
try:
    conn.sendmsg([json.dumps({"work": work}).encode()],
                 [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [w, w]))])
    print(json.dumps(conn.recv(16).decode()))
except (BrokenPipeError, ConnectionResetError):  # closed before or after the request came
    print(json.dumps(""))
'''


def test_caller_in_another_user_namespace_is_refused(carrier: Carrier, image: str) -> None:
    """The keeper takes work only from this user in its own user namespace: a rootless
    namespace's root (this uid outside) is closed unanswered, and the keeper runs on."""
    _detached(carrier, image, "a")
    keeper = _keeper_of(carrier, "a")
    res = subprocess.run(["unshare", "--user", f"--map-user={os.getuid()}",
                          f"--map-group={os.getgid()}", sys.executable, "-c", _KNOCK,
                          str(_socket_of(keeper))], capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout.strip()) == (0, '""'), res.stderr
    assert alive(keeper)
    assert carrier("exec", "a", "true").code == 0
    assert carrier("rm", "-f", "a").code == 0


def test_a_named_networks_supervisor_is_reaped_once_it_ends(carrier: Carrier, image: str) -> None:
    """A named network's supervisor, started detached by its first container's group, is
    orphaned to the keeper; once its last container has left and it has ended, the keeper reaps
    it while other containers keep the keeper alive (before: a zombie for the keeper's life)."""
    assert carrier("network", "create", "zombies").code == 0
    _detached(carrier, image, "stays")
    keeper = _keeper_of(carrier, "stays")
    _detached(carrier, image, "member", network="zombies")
    state = json.loads((carrier.root / "networks" / "zombies" / "run.json").read_text())
    supervisor = int(state["supervisor_pid"])
    assert _ppid(supervisor) == keeper
    assert carrier("rm", "-f", "member").code == 0
    started = _stat(supervisor)[19]  # its start time: the same PID reused is another process
    wait_pidfd(supervisor)  # it has ended: a zombie until its parent reaps it
    deadline = time.monotonic() + 20
    while (left := _stat(supervisor)) and left[19] == started and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded poll: reaping is the keeper's act, it sends no event
    assert not (left and left[19] == started), f"not reaped: {left}"
    assert alive(keeper)
    assert _keeper_of(carrier, "stays") == keeper
    assert carrier("rm", "-f", "stays").code == 0
    assert carrier("network", "rm", "zombies").code == 0


def test_keeper_killed_at_random_moments(carrier: Carrier, image: str) -> None:
    """The keeper is SIGKILLed at random moments while detached containers start, with another
    one running: each ``run -d`` succeeds or fails in one line with 125, the next command
    reconciles every container the dead keeper kept (exited, supervisor-died), a retried start
    runs under a new keeper, and nothing is left once they are removed."""
    rng = random.Random(SEED)
    before = set(user_processes())
    keepers: set[int] = set()
    outcomes = {"started": 0, "failed": 0, "reaped": 0}
    for round_ in range(6):
        anchor = f"anchor{round_}"
        _detached(carrier, image, anchor, network=HELPERS[round_ % 2])
        keeper = _keeper_of(carrier, anchor)
        assert keeper not in keepers  # a new one: the last round's was killed
        keepers.add(keeper)
        names = [f"k{round_}-{i}" for i in range(3)]
        procs = [carrier.popen("run", "-d", "--name", n, "--network", HELPERS[i % 2], image,
                               "sleep", "1000", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i, n in enumerate(names)]
        time.sleep(rng.uniform(0.0, 0.5))  # the random moment itself, not a wait for anything
        os.kill(keeper, signal.SIGKILL)
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode in (0, 125), err
            assert proc.returncode == 0 or (err.count("\n") == 1 and "Traceback" not in err), err
            outcomes["started" if proc.returncode == 0 else "failed"] += 1
        wait_pidfd(keeper)
        res = carrier("ps", "-a", "--format", "json")  # reconciles what the keeper left
        assert res.code == 0, res.err
        for c in json.loads(res.out):
            if c["State"] == "running":  # a start retried after the kill: a new keeper's
                assert _keeper_of(carrier, c["Names"][0]) != keeper
            else:
                outcomes["reaped"] += str(c["Reason"]).startswith("supervisor-died")
        listed = [c["Names"][0] for c in json.loads(res.out)]
        assert carrier("rm", "-f", *listed).code == 0
        left = still_alive({p: c for p, c in user_processes().items() if p not in before})
        assert not left, f"round {round_}: {left}"
        assert not any((carrier.root / "runtime").iterdir()), f"round {round_}: runtime state"
    assert outcomes["reaped"] >= 6, outcomes  # at least each round's running anchor


def test_a_keeper_short_of_descriptors_leaves_the_next_container_its_own(
        carrier: Carrier, image: str) -> None:
    """Under a hard open-file limit the keeper cannot raise, a container it has no room for
    gets a supervisor process of its own instead: every ``run -d`` succeeds."""
    names = [f"c{i}" for i in range(4)]
    for name in names:
        argv = carrier.argv("run", "-d", "--name", name, "--network", "none", image, "sleep", "1000")
        res = subprocess.run(["sh", "-c", 'ulimit -n 80 && exec "$@"', "sh", *argv],
                             env=carrier.env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
    titles = [_cmdline(int(carrier.record(n)["supervisor_pid"])) for n in names]  # type: ignore[arg-type]
    assert titles[0].startswith(TITLE)
    assert not all(t.startswith(TITLE) for t in titles), titles
    assert carrier("rm", "-f", *names).code == 0


def test_a_start_that_fails_early_lets_go_of_the_container(carrier: Carrier, image: str,
                                                           tmp_path: Path) -> None:
    """A detached start that fails before its group exists (its runtime gone since create)
    is one line and 125, and the keeper lets go of the container at once: rm works (the
    keeper kept its lock until it ended)."""
    runtime = tmp_path / "runtime"
    runtime.write_text('#!/bin/sh\nexec runc "$@"\n')
    runtime.chmod(0o755)
    _detached(carrier, image, "other")  # a keeper that stays
    res = carrier("create", "--name", "c", "--runtime", str(runtime), "--network", "none", image,
                  "sleep", "1000")
    assert res.code == 0, res.err
    runtime.unlink()
    res = carrier("start", "c")
    assert res.code == 125, res.err
    assert res.err.count("\n") == 1, res.err
    wait_unsupervised(carrier.record("c"), bound=10)
    assert carrier("rm", "c").code == 0
    assert carrier("rm", "-f", "other").code == 0


def test_readiness_waits_take_descriptors_above_1024() -> None:
    """The network readiness wait polls descriptors above 1024 (a keeper with ~100 containers
    holds such), which ``select`` refused with ValueError."""
    import resource

    from carrier._network._netlink import _poll

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.skip("the hard open-file limit is below 2048")
    resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    r, w = os.pipe()
    high = os.dup2(r, 1500)
    try:
        os.write(w, b"x")
        assert _poll([high], 5) == [high]
    finally:
        for fd in (r, w, high):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_sweep_removes_what_dead_keepers_left_only(tmp_path: Path) -> None:
    """A new keeper removes a dead keeper's socket and locks (and its log once a day old), and
    leaves a live keeper's files and a recent log alone."""
    from carrier._cli._keeper import _sweep

    def files(base: str) -> list[Path]:
        return [tmp_path / f"{base}.sock{suffix}" for suffix in ("", ".lock", ".start")]

    for base in ("keeper-dead", "keeper-fresh", "keeper-live", "keeper-self"):
        for f in files(base):
            f.touch()
        (tmp_path / f"{base}.log").touch()
    old = time.time() - 2 * 86400
    os.utime(tmp_path / "keeper-dead.log", (old, old))
    (tmp_path / "keeper-startonly.sock.start").touch()  # died before its lock was made
    live = os.open(tmp_path / "keeper-live.sock.lock", os.O_RDWR)
    try:
        fcntl.flock(live, fcntl.LOCK_EX)
        _sweep(str(tmp_path / "keeper-self.sock"))
    finally:
        os.close(live)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([
        "keeper-fresh.log", "keeper-live.log", "keeper-self.log",
        *(f.name for base in ("keeper-live", "keeper-self") for f in files(base)),
    ])
