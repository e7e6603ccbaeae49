"""The fork server: commands run in warm forks, with the caller's descriptors, signals and exit
status; its caller's death ends a foreground command; killing the server at any moment loses
no container; it exits when idle and comes back on demand."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import wait_pidfd

from carrier._cli._fastpath import socket_path

pytestmark = pytest.mark.rootless
# A PID 1 that ends at SIGTERM with code 143 (busybox sleep as PID 1 would ignore it).
SLEEPER = ("sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait")


def _server(bound: float = 20, path: Path | None = None) -> int:
    """The pid of this user's fork server for this Carrier (or the one of *path*): the process
    that holds the socket listening on its path (started by a command, it comes up beside it)."""
    path = path or socket_path()
    assert path is not None
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        inodes = {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]
                  if line.endswith(f" {path}") and int(line.split()[3], 16) & 0x10000}
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                fds = os.listdir(f"/proc/{entry}/fd")
                if any(os.readlink(f"/proc/{entry}/fd/{fd}")[8:-1] in inodes for fd in fds):
                    return int(entry)
            except OSError:
                continue
        time.sleep(0.02)  # bounded poll: the server is another process's child, nothing to wait on
    raise AssertionError("no fork server came up")


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])


def _supervisor(carrier: Carrier, name: str, bound: float = 20) -> int:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        res = carrier("info", name)
        if res.code == 0 and '"running"' in res.out:
            return int(carrier.record(name)["supervisor_pid"])  # type: ignore[arg-type]
        time.sleep(0.05)  # bounded poll: the record is written by another process
    raise AssertionError(f"{name} did not start: {res.out[-300:]} {res.err}")


def test_command_runs_in_a_fork_with_the_callers_descriptors(carrier: Carrier, image: str) -> None:
    """Once the server is up, a foreground run is supervised by a fork of the server, not by
    the `carrier` process the caller started, and that fork writes to the caller's own pipe."""
    carrier("ps")
    server = _server()
    proc = carrier.popen("run", "--name", "fg", "--network", "none", image, *SLEEPER,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        supervisor = _supervisor(carrier, "fg")
        assert supervisor != proc.pid
        assert _ppid(supervisor) == server
        assert os.readlink(f"/proc/{supervisor}/fd/1") == os.readlink(f"/proc/{proc.pid}/fd/1")
        assert os.readlink(f"/proc/{supervisor}/fd/1").startswith("pipe:")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143  # forwarded to the container, its code passed back


def test_detached_supervisor_is_forked_by_the_server_not_by_its_command(
        carrier: Carrier, image: str) -> None:
    """A detached supervisor is a fresh fork of the server, not a child of its `run -d` command
    (it would keep as its own every page the command dirtied): so while the command still runs,
    the supervisor is not its child."""
    carrier("ps")
    _server()
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)
    os.write(write, b"x" * 4096)  # full: the command blocks when it prints the id, still alive
    pipe = os.readlink(f"/proc/self/fd/{write}")
    proc = subprocess.Popen(carrier.argv("run", "-d", "--name", "det", "--network", "none", image,
                                         "sleep", "1000"),
                            env=carrier.env, stdin=subprocess.DEVNULL, stdout=write)
    os.close(write)
    try:
        supervisor = _supervisor(carrier, "det")
        command = [int(e) for e in filter(str.isdigit, os.listdir("/proc")) if int(e) != proc.pid
                   and _readlink(f"/proc/{e}/fd/1") == pipe]
        assert len(command) == 1, command  # the fork that runs `run -d`, blocked on its output
        assert _ppid(supervisor) != command[0]
    finally:
        out = b""
        while select.select([read], [], [], 30)[0] and (chunk := os.read(read, 65536)):
            out += chunk  # bounded: each wait is at most 30 s, and the command ends at EOF
        os.close(read)
        code = proc.wait(timeout=30)
        shown = carrier.record("det")["id"]
        assert carrier("rm", "-f", "det").code == 0
    assert (code, out[4096:].decode().strip()) == (0, shown)


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def test_plain_path_when_turned_off(carrier: Carrier, image: str) -> None:
    """With CARRIER_FORK_SERVER=0 the `carrier` process supervises the container itself."""
    carrier.env["CARRIER_FORK_SERVER"] = "0"
    proc = carrier.popen("run", "--name", "plain", "--network", "none", image, *SLEEPER)
    try:
        assert _supervisor(carrier, "plain") == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143


# Runs its arguments with SIGCHLD ignored, which exec passes on (as some daemons leave it).
_IGNORING_SIGCHLD = [sys.executable, "-c", "import os, signal, sys; "
                     "signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"]


@pytest.mark.parametrize("server", [False, True], ids=["plain", "fork-server"])
def test_a_caller_that_ignores_sigchld(carrier: Carrier, image: str, server: bool) -> None:
    """A caller that leaves SIGCHLD ignored (inherited across exec) changes nothing: the plain
    path, and a fork server such a caller started, still read every exit status (before: "no
    such process", 125, and a container left in the record as exited 125)."""
    if server:
        _no_server(carrier)  # the next command runs plainly and starts the server beside it
    else:
        carrier.env["CARRIER_FORK_SERVER"] = "0"
    for _ in range(2 if server else 1):  # with a server: its starter, then a fork of it
        res = carrier("run", "--rm", image, "sh", "-c", "echo hi; exit 3",
                      prefix=_IGNORING_SIGCHLD)
        assert (res.code, res.out, res.err) == (3, "hi\n", "")
    if server:
        with open(f"/proc/{_server()}/status") as status:
            ignored = int(next(ln for ln in status if ln.startswith("SigIgn:")).split()[1], 16)
        assert not ignored & (1 << (signal.SIGCHLD - 1))
    res = carrier("run", "-d", "--name", "ign", image, "sh", "-c",
                  "trap 'exit 0' TERM; sleep 1000 & wait", prefix=_IGNORING_SIGCHLD)
    assert res.code == 0, res.err
    assert carrier("stop", "ign", prefix=_IGNORING_SIGCHLD).code == 0
    record = carrier.record("ign")
    assert (record["exit_code"], record["reason"]) == (0, "stop-requested")
    assert carrier("rm", "ign").code == 0


@pytest.mark.parametrize("server", [False, True], ids=["plain", "fork-server"])
def test_a_closed_standard_descriptor_is_dev_null(carrier: Carrier, image: str, server: bool) -> None:
    """``<&-``, ``>&-``, ``2>&-``: the command runs with /dev/null there, its code intact, the
    other streams whole (before: a traceback and exit 1 with stdout closed; with stdin closed,
    the working directory's descriptor became the command's stdin and ``-i`` hung)."""
    if server:
        carrier("ps")
        _server()
    else:
        carrier.env["CARRIER_FORK_SERVER"] = "0"
    script = "echo out; echo err >&2; exit 3"

    def closing(redirect: str) -> list[str]:
        return ["sh", "-c", f'exec "$@" {redirect}', "sh"]

    res = carrier("run", "--rm", "-i", "--network", "none", image, "cat", prefix=closing("<&-"),
                  timeout=30)
    assert (res.code, res.out, res.err) == (0, "", "")
    res = carrier("run", "--rm", "--network", "none", image, "sh", "-c", script,
                  prefix=closing(">&-"))
    assert (res.code, res.out, res.err) == (3, "", "err\n")
    res = carrier("run", "--rm", "--network", "none", image, "sh", "-c", script,
                  prefix=closing("2>&-"))
    assert (res.code, res.out, res.err) == (3, "out\n", "")


def test_exit_code_output_and_signal_death_pass_through(carrier: Carrier, image: str) -> None:
    """The command's code and its stdout and stderr (apart) reach the caller; a command killed
    by a signal kills its caller with the same signal."""
    carrier("ps")
    _server()
    res = carrier("run", "--rm", "--network", "none", image, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (res.code, res.out, res.err) == (7, "out\n", "err\n")
    proc = carrier.popen("run", "--name", "victim", "--network", "none", image, "sleep", "1000")
    os.kill(_supervisor(carrier, "victim"), signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert carrier("rm", "-f", "victim").code == 0


def test_caller_killed_ends_the_foreground_group(carrier: Carrier, image: str) -> None:
    """SIGKILL to the `carrier` process a user started ends its container's group, as it does
    without the server (the leak check proves nothing stays)."""
    carrier("ps")
    _server()
    proc = carrier.popen("run", "--name", "orphan", "--network", "none", image, "sleep", "1000")
    supervisor = _supervisor(carrier, "orphan")
    proc.kill()
    proc.wait(timeout=30)
    wait_pidfd(supervisor)
    assert carrier("rm", "-f", "orphan").code == 0


def test_server_killed_at_random_moments_loses_no_container(carrier: Carrier, image: str) -> None:
    """The server is SIGKILLed at random moments while detached containers start: every
    command still succeeds (a command already forked reports its own status; one not yet
    forked runs in its caller), every container runs on, and the next command brings a new
    server."""
    rng = random.Random(20261201)
    carrier("ps")
    started: list[str] = []
    for round_ in range(3):
        server = _server()
        carrier("ps")  # served: the server has imported (it listens before), so the random
        # moment may also fall after a fork, not only before the server could fork at all
        names = [f"d{round_}-{i}" for i in range(4)]
        procs = [carrier.popen("run", "-d", "--name", n, "--network", "none", image, "sleep", "1000",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in names]
        time.sleep(rng.uniform(0, 0.3))  # the random moment itself, not a wait for anything
        os.kill(server, signal.SIGKILL)
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        started += names
        carrier("ps")  # brings the next server
    for name in started:
        assert _supervisor(carrier, name) > 0
    res = carrier("ps", "-q", "--no-trunc")
    assert res.code == 0
    assert carrier("rm", "-f", *started).code == 0


def test_idle_exit_and_restart_on_demand(carrier: Carrier, image: str) -> None:
    """A server with nothing to do ends after its idle time and removes its socket; the next
    command starts a new one."""
    path = socket_path()
    assert path is not None
    carrier("ps")
    os.kill(_server(), signal.SIGKILL)  # the server of earlier tests has the default idle time
    carrier.env["CARRIER_FORK_SERVER_IDLE"] = "0.5"
    carrier("ps")  # no server: runs plainly and starts one with that idle time
    first = _server()
    wait_pidfd(first)
    assert not path.exists()
    del carrier.env["CARRIER_FORK_SERVER_IDLE"]
    assert carrier("ps").code == 0
    assert _server() != first


def test_directory_open_to_others_is_never_used(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """A socket directory that others may write is refused: the command runs plainly and no
    server listens there."""
    runtime = tmp_path / "xdg"
    (runtime / "carrier").mkdir(parents=True)
    (runtime / "carrier").chmod(0o777)
    carrier.env["XDG_RUNTIME_DIR"] = str(runtime)
    res = carrier("run", "--rm", "--network", "none", image, "echo", "hi")
    assert (res.code, res.out) == (0, "hi\n")
    assert list((runtime / "carrier").iterdir()) == []


def test_server_imports_the_callers_package_not_the_working_directorys(
        carrier: Carrier, tmp_path: Path) -> None:
    """A `carrier` run from a directory that holds another ``carrier`` package starts a server
    that runs the caller's own package, never that one."""
    script = Path(sys.executable).parent / "carrier"  # the console script: it imports no cwd
    where = subprocess.run([sys.executable, "-c", "from carrier._cli._fastpath import socket_path; "
                            "print(socket_path())"], cwd="/", env=carrier.env, text=True,
                           capture_output=True, check=True)
    path = Path(where.stdout.strip())
    if path.exists():  # a server of an earlier test: the next command must start a new one
        with contextlib.suppress(AssertionError):
            old = _server(bound=1, path=path)
            os.kill(old, signal.SIGKILL)
            wait_pidfd(old)
    decoy, ran = tmp_path / "decoy", tmp_path / "decoy-ran"
    (decoy / "carrier").mkdir(parents=True)
    (decoy / "carrier" / "__init__.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    res = subprocess.run([str(script), "ps"], cwd=decoy, env=carrier.env, text=True,
                         capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert res.returncode == 0, res.stderr
    _server(path=path)
    assert not ran.exists()


def test_a_server_gone_before_taking_the_command_is_replaced(carrier: Carrier) -> None:
    """A command whose server closes the connection before taking it (killed, crashed) runs
    in its caller and starts a new server for the next command."""
    path = socket_path()
    assert path is not None
    carrier("ps")
    old = _server()
    os.kill(old, signal.SIGKILL)
    wait_pidfd(old)
    path.unlink(missing_ok=True)
    dying = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # it accepts, then is gone
    dying.bind(str(path))
    dying.listen(1)

    def accept_and_die() -> None:
        conn, _ = dying.accept()
        dying.close()
        conn.close()

    gone = threading.Thread(target=accept_and_die)
    gone.start()
    res = carrier("ps")
    gone.join(timeout=30)
    assert res.code == 0, res.err
    assert not gone.is_alive()
    assert _server() not in (old, os.getpid())


def _server_side_connections(pid: int, path: Path) -> int:
    """How many of the server's accepted connections (on *path*) process *pid* holds open."""
    inodes = {line.split()[6] for line in Path("/proc/net/unix").read_text().splitlines()[1:]
              if line.endswith(f" {path}") and not int(line.split()[3], 16) & 0x10000}
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] in inodes
               for fd in os.listdir(f"/proc/{pid}/fd"))


def test_a_fork_holds_only_its_own_callers_connection(carrier: Carrier, image: str) -> None:
    """A command forked by the server closes the other callers' connections it inherited, so a
    long-lived command never keeps another caller's line to the server open."""
    carrier("ps")
    path = socket_path()
    assert path is not None
    _server(path=path)
    procs = [carrier.popen("run", "--rm", "--name", name, "--network", "none", image,
                           "sleep", "1000", stdin=subprocess.DEVNULL) for name in ("first", "second")]
    try:
        forks = [_supervisor(carrier, "first"), _supervisor(carrier, "second")]
        assert [_server_side_connections(pid, path) for pid in forks] == [1, 1]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)


def test_spawned_supervisor_logs_as_its_command_was_told(carrier: Carrier, image: str) -> None:
    """A detached supervisor the server spawned logs into its supervisor.log at the level its
    ``run -d`` was given, as one its command forked did (it logged nothing at all)."""
    carrier("ps")
    _server()
    res = carrier("--log-level", "info", "run", "-d", "--name", "logged", "--network", "none",
                  image, *SLEEPER)
    assert res.code == 0, res.err
    cid = str(carrier.record("logged")["id"])
    _supervisor(carrier, "logged")
    assert carrier("stop", "logged").code == 0
    log = (carrier.root / "containers" / cid / "supervisor.log").read_text()
    assert "container.started" in log
    assert carrier("rm", "logged").code == 0


_KNOCK = '''
import array, json, os, socket, sys
conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
conn.connect(sys.argv[1])
cwd = os.open(".", os.O_PATH)
null = os.open(os.devnull, os.O_RDWR)
request = json.dumps({"argv": ["ps"], "env": dict(os.environ), "umask": 18, "limits": {},
                      "title": ["carrier", "ps"]}).encode()
conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [null, null, null, cwd]))])
conn.settimeout(30)
print(json.dumps(conn.recv(1 << 16).decode()))
'''


def test_caller_in_another_user_namespace_is_refused(carrier: Carrier, image: str) -> None:
    """A process of this user in another user namespace (a rootless container's root is this
    uid too) gets nothing from the server: the connection closes and nothing is forked; the
    same request from this namespace runs."""
    carrier("ps")
    path = socket_path()
    assert path is not None
    _server(path=path)
    argv = [sys.executable, "-c", _KNOCK, str(path)]
    inside = subprocess.run(["unshare", "--user", "--map-root-user", *argv], capture_output=True,
                            text=True, timeout=60, env=carrier.env, stdin=subprocess.DEVNULL)
    assert (inside.returncode, json.loads(inside.stdout)) == (0, ""), inside.stderr
    here = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=carrier.env,
                          stdin=subprocess.DEVNULL)
    assert '"pid"' in json.loads(here.stdout), here.stdout + here.stderr


def test_sweep_removes_dead_servers_files_only(tmp_path: Path) -> None:
    """A new fork server removes the socket and lock of a server that no longer holds its
    lock, and leaves a live server's and its own alone."""
    from carrier._cli._zygote import _sweep

    for name in ("fork-dead", "fork-live", "fork-self"):
        (tmp_path / f"{name}.sock").touch()
        (tmp_path / f"{name}.sock.lock").touch()
    (tmp_path / "fork-idled.sock.lock").touch()  # an idle exit removes its socket, not its lock
    live = os.open(tmp_path / "fork-live.sock.lock", os.O_RDWR)
    try:
        fcntl.flock(live, fcntl.LOCK_EX)
        _sweep(tmp_path / "fork-self.sock")
    finally:
        os.close(live)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fork-live.sock", "fork-live.sock.lock", "fork-self.sock", "fork-self.sock.lock"]


def _foreground(carrier: Carrier, image: str, name: str) -> subprocess.Popen[str]:
    return carrier.popen("run", "--rm", "--name", name, "--network", "none", image, *SLEEPER,
                         stdin=subprocess.DEVNULL)


def _end_all(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=60)


def _no_server(carrier: Carrier) -> None:
    """End the server earlier tests left, so that the next command runs plainly and starts one."""
    carrier("ps")
    old = _server()
    os.kill(old, signal.SIGKILL)
    wait_pidfd(old)


def test_a_command_while_the_servers_starter_runs_is_served(carrier: Carrier, image: str) -> None:
    """The server a long-running command started (it runs plainly) listens at once and imports
    when another command comes, which is then a fork of the server, its starter still running."""
    _no_server(carrier)
    starter = _foreground(carrier, image, "long")
    second: subprocess.Popen[str] | None = None
    try:
        server = _server()
        assert _ppid(server) == starter.pid
        second = _foreground(carrier, image, "second")
        assert _ppid(_supervisor(carrier, "second")) == server
        assert _supervisor(carrier, "long") == starter.pid
    finally:
        _end_all(starter, *([second] if second else []))
    assert (starter.returncode, second.returncode if second else None) == (143, 143)


def test_a_server_whose_starter_outlives_the_idle_time_ends(carrier: Carrier, image: str) -> None:
    """A server whose starter runs longer than the idle time, with no other command, ends then
    (it does not wait for its starter forever) and removes its socket."""
    _no_server(carrier)
    carrier.env["CARRIER_FORK_SERVER_IDLE"] = "1"
    try:
        starter = _foreground(carrier, image, "long")
        try:
            server = _server()
            wait_pidfd(server)
            path = socket_path()
            assert path is not None
            assert not path.exists()
            assert starter.poll() is None
        finally:
            _end_all(starter)
    finally:
        del carrier.env["CARRIER_FORK_SERVER_IDLE"]
    assert starter.returncode == 143


_THREADED = "import threading\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n"


def test_commands_run_plainly_when_the_server_cannot_fork(carrier: Carrier, tmp_path: Path) -> None:
    """A server that cannot become ready (a thread started by the interpreter's site hook: it
    never forks with threads) lets the commands waiting for it and the later ones run plainly,
    removes its socket at once, and ends after its idle time."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_THREADED)
    runtime = Path(tempfile.mkdtemp(prefix="xdg", dir="/tmp"))  # short: a socket path's limit
    try:
        _cannot_fork(carrier, site, runtime)
    finally:
        shutil.rmtree(runtime)


def _cannot_fork(carrier: Carrier, site: Path, runtime: Path) -> None:
    env = {**carrier.env, "XDG_RUNTIME_DIR": str(runtime), "PYTHONPATH": str(site),
           "CARRIER_FORK_SERVER_IDLE": "1"}
    first = subprocess.run(carrier.argv("ps"), env=env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
    assert first.returncode == 0, first.stderr
    (lock,) = (runtime / "carrier").glob("fork-*.sock.lock")
    queued = [subprocess.Popen(carrier.argv("ps"), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
              for _ in range(3)]  # while the server imports: they wait on its socket
    for proc in queued:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    fd = os.open(lock, os.O_RDWR)
    try:  # the server holds its lock until it ends (bounded poll: it is no child of ours)
        deadline = time.monotonic() + 30
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, "the server did not end"
                time.sleep(0.05)
        # Still held: a server a queued command started may not come up now.
        assert sorted(p.name for p in (runtime / "carrier").iterdir()) == [lock.name]
    finally:
        os.close(fd)
