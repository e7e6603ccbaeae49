"""The everyday container commands Podman users type (kill, wait, port, logs -f/--tail, ps
filters), run rootless against real containers."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import wait_event


def free_port() -> int:
    """A TCP port free on host loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def follow_until(carrier: Carrier, name: str, needle: str) -> subprocess.Popen[str]:
    """Start ``carrier logs -f NAME`` and read its output until a line holds *needle* (every
    read is an event: the follower writes what the container printed)."""
    proc = carrier.popen("logs", "-f", name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    for _ in range(1000):
        line = proc.stdout.readline()
        assert line, f"logs -f ended before {needle!r}: {proc.communicate(timeout=30)}"
        if needle in line:
            return proc
    raise AssertionError(f"{needle!r} not among the first 1000 lines")


@pytest.fixture
def sleeper(carrier: Carrier, image: str) -> Iterator[str]:
    """A detached container that runs until it is killed."""
    assert carrier("run", "-d", "--name", "sleeper", image, "sleep", "1000").code == 0
    yield "sleeper"
    carrier("rm", "-f", "sleeper")


class TestKill:
    def test_kill_default_is_sigkill(self, carrier: Carrier, sleeper: str) -> None:
        """kill without -s sends SIGKILL: wait then prints 137 and the record says 137."""
        res = carrier("kill", sleeper)
        assert (res.code, res.out) == (0, "sleeper\n"), res.err
        res = carrier("wait", sleeper)
        assert (res.code, res.out) == (0, "137\n"), res.err
        assert carrier.record(sleeper)["exit_code"] == 137

    @pytest.mark.parametrize("spelled", ["USR1", "sigusr1", "10"])
    def test_kill_named_signal(self, carrier: Carrier, image: str, spelled: str) -> None:
        """kill -s delivers the signal named (name, SIG name, any case, or number) to the command."""
        script = 'trap "echo got-usr1; exit 7" USR1; echo ready; while :; do sleep 0.1; done'
        assert carrier("run", "-d", "--name", "trap", image, "sh", "-c", script).code == 0
        follower = follow_until(carrier, "trap", "ready")
        assert carrier("kill", "-s", spelled, "trap").code == 0
        out, _ = follower.communicate(timeout=30)  # logs -f ends with the supervisor
        assert "got-usr1" in out
        assert follower.returncode == 0
        assert carrier("wait", "trap").out == "7\n"
        carrier("rm", "trap")

    def test_kill_bad_input(self, carrier: Carrier, sleeper: str) -> None:
        """A bad signal name is one line and 125, and the container still runs."""
        res = carrier("kill", "-s", "NOPE", sleeper)
        assert (res.code, res.err) == (125, "carrier: invalid signal: NOPE\n")
        assert carrier.record(sleeper)["status"] == "running"

    def test_kill_not_running(self, carrier: Carrier, image: str) -> None:
        """kill of an ended or missing container fails in one line each with 125."""
        assert carrier("run", "-d", "--name", "done", image, "true").code == 0
        assert carrier("wait", "done").out == "0\n"
        res = carrier("kill", "done", "ghost")
        assert res.code == 125
        assert res.err.splitlines() == ["carrier: can only kill running containers: done is exited",
                                        "carrier: no such container: ghost"]
        carrier("rm", "done")


class TestWait:
    def test_wait_prints_each_exit_code(self, carrier: Carrier, image: str) -> None:
        """wait blocks until each container ends and prints their codes in order."""
        assert carrier("run", "-d", "--name", "a", image, "sh", "-c", "exit 3").code == 0
        assert carrier("run", "-d", "--name", "b", image, "true").code == 0
        res = carrier("wait", "a", "b")
        assert (res.code, res.out) == (0, "3\n0\n"), res.err
        carrier("rm", "a", "b")

    def test_wait_blocks_until_stopped(self, carrier: Carrier, sleeper: str) -> None:
        """A wait started on a running container returns only once it was stopped."""
        waiter = carrier.popen("wait", sleeper, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert carrier.record(sleeper)["status"] == "running"
        assert carrier("stop", "-t", "0", sleeper).code == 0
        out, err = waiter.communicate(timeout=30)
        assert (waiter.returncode, out) == (0, "137\n"), err


HELPERS = ["pasta", "slirp4netns"]


class TestPort:
    @pytest.mark.parametrize("helper", HELPERS)
    def test_port_lists_published(self, carrier: Carrier, image: str, helper: str) -> None:
        """port lists each published port as Podman does, and looks one up by container port."""
        tcp, udp = free_port(), free_port()
        assert carrier("run", "-d", "--name", "web", "--network", helper,
                       "-p", f"127.0.0.1:{tcp}:80", "-p", f"127.0.0.1:{udp}:53/udp",
                       image, "sleep", "1000").code == 0
        res = carrier("port", "web")
        assert res.code == 0, res.err
        assert sorted(res.out.splitlines()) == sorted([f"80/tcp -> 127.0.0.1:{tcp}",
                                                       f"53/udp -> 127.0.0.1:{udp}"])
        assert carrier("port", "web", "80").out == f"127.0.0.1:{tcp}\n"
        assert carrier("port", "web", "53/udp").out == f"127.0.0.1:{udp}\n"
        res = carrier("port", "web", "81")
        assert (res.code, res.err) == (125, 'carrier: failed to find published port "81/tcp"\n')
        res = carrier("port", "web", "80/sctp")
        assert res.code == 125
        assert res.err.startswith("carrier: invalid port '80/sctp'")
        assert carrier("rm", "-f", "web").code == 0


class TestLogs:
    def test_tail(self, carrier: Carrier, image: str) -> None:
        """logs --tail N prints the last N lines; 0 none, -1 all; a bad count is 125."""
        assert carrier("run", "-d", "--name", "count", image, "sh", "-c",
                       "for i in 1 2 3 4 5; do echo $i; done; printf 6").code == 0
        assert carrier("wait", "count").out == "0\n"
        assert carrier("logs", "--tail", "2", "count").out == "5\n6"
        assert carrier("logs", "-n", "0", "count").out == ""
        assert carrier("logs", "--tail", "-1", "count").out == "1\n2\n3\n4\n5\n6"
        assert carrier("logs", "--tail", "9", "count").out == "1\n2\n3\n4\n5\n6"
        res = carrier("logs", "--tail", "-2", "count")
        assert (res.code, res.out) == (125, "")
        assert res.err.startswith("carrier: invalid --tail -2")
        carrier("rm", "count")

    def test_follow_sees_new_output_and_ends_with_container(self, carrier: Carrier,
                                                            image: str) -> None:
        """logs -f prints what the container writes after it started following, and ends by
        itself once the container has been stopped."""
        script = "echo ready; exec sleep 1000"
        assert carrier("run", "-d", "--name", "talk", image, "sh", "-c", script).code == 0
        follower = follow_until(carrier, "talk", "ready")
        assert carrier("exec", "talk", "sh", "-c", "echo later > /proc/1/fd/1").code == 0
        assert follower.stdout is not None
        assert follower.stdout.readline() == "later\n"
        assert carrier("stop", "-t", "0", "talk").code == 0
        out, err = follower.communicate(timeout=30)
        assert (follower.returncode, out, err) == (0, "", "")
        carrier("rm", "talk")

    def test_follow_of_ended_container_returns(self, carrier: Carrier, image: str) -> None:
        """logs -f of a container that has already ended prints its log and returns."""
        assert carrier("run", "-d", "--name", "brief", image, "echo", "hi").code == 0
        assert carrier("wait", "brief").out == "0\n"
        res = carrier("logs", "-f", "--tail", "1", "brief")
        assert (res.code, res.out) == (0, "hi\n"), res.err
        carrier("rm", "brief")


def ids(res_out: str) -> list[str]:
    """The lines of a ``-q`` listing."""
    return res_out.split()


class TestPs:
    def test_quiet_no_trunc_last_latest(self, carrier: Carrier, image: str) -> None:
        """ps -q/--no-trunc/-n/-l list the ids Podman would, newest first for -n and -l."""
        assert carrier("run", "-d", "--name", "a", image, "true").code == 0
        assert carrier("wait", "a").out == "0\n"
        full = {}
        for name in ("b", "c"):
            res = carrier("run", "-d", "--name", name, image, "sh", "-c", "exec sleep 1000",
                          "x" * 30)
            assert res.code == 0, res.err
            full[name] = res.out.strip()
        full["a"] = str(carrier.record("a")["id"])
        assert ids(carrier("ps", "-q").out) == [full["b"][:12], full["c"][:12]]
        assert ids(carrier("ps", "-q", "--no-trunc").out) == [full["b"], full["c"]]
        assert ids(carrier("ps", "-q", "-a").out) == [full[n][:12] for n in "abc"]
        assert ids(carrier("ps", "-q", "-n", "2").out) == [full["c"][:12], full["b"][:12]]
        assert ids(carrier("ps", "-q", "--last", "9").out) == [full[n][:12] for n in "cba"]
        assert ids(carrier("ps", "-q", "-l").out) == [full["c"][:12]]
        table = carrier("ps", "--no-trunc").out
        assert full["c"] in table
        assert '"sh -c exec sleep 1000 ' + "x" * 30 + '"' in table
        assert '"sh -c exec sleep ..."' in carrier("ps").out
        res = carrier("ps", "-n", "1", "-l")
        assert (res.code, res.err) == (125, "carrier: --last and --latest are mutually exclusive\n")
        assert carrier("rm", "-f", "a", "b", "c").code == 0

    def test_filters(self, carrier: Carrier, image: str) -> None:
        """--filter name/id/status/ancestor match as in Podman: one key's values any, keys all."""
        assert carrier("run", "-d", "--name", "web-1", image, "sleep", "1000").code == 0
        assert carrier("run", "-d", "--name", "web-2", image, "sleep", "1000").code == 0
        assert carrier("run", "-d", "--name", "db", image, "sleep", "1000").code == 0
        assert carrier("run", "-d", "--name", "job", image, "sh", "-c", "exit 2").code == 0
        assert carrier("wait", "job").out == "2\n"

        def names(*filters: str) -> list[str]:
            args = [a for f in filters for a in ("--filter", f)]
            res = carrier("ps", "--format", "json", *args)
            assert res.code == 0, res.err
            return sorted(c["Names"][0] for c in json.loads(res.out))

        assert names("name=web") == ["web-1", "web-2"]
        assert names("name=^web-1$", "name=db") == ["db", "web-1"]
        assert names("name=web", "name=db", "status=running") == ["db", "web-1", "web-2"]
        assert names("status=exited") == ["job"]  # a status filter looks at every state
        assert names("status=exited", "name=web") == []
        db_id = str(carrier.record("db")["id"])
        assert names(f"id={db_id[:6]}") == ["db"]
        image_id = str(carrier.record("db")["spec"]["image_id"]).removeprefix("sha256:")  # type: ignore[index]
        assert names("ancestor=busybox") == ["db", "web-1", "web-2"]
        assert names(f"ancestor={image_id[:12]}", "name=db") == ["db"]
        assert names("ancestor=nginx") == []
        for bad, said in [("colour=red", "unknown key 'colour'"),
                          ("name", "expected KEY=VALUE"),
                          ("status=sleeping", "'sleeping' is not a valid status"),
                          ("name=(", "bad regular expression")]:
            res = carrier("ps", "--filter", bad)
            assert (res.code, res.out) == (125, ""), bad
            assert res.err.startswith(f"carrier: invalid filter {bad!r}: {said}"), res.err
            assert len(res.err.splitlines()) == 1
        assert carrier("rm", "-f", "web-1", "web-2", "db", "job").code == 0

    def test_label_filter(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """--filter label=KEY[=VALUE] finds the containers of a tree (labels all must match)."""
        tree = tmp_path / "pair.toml"
        tree.write_text('name = "pair"\n[containers.one]\nimage = "busybox"\n'
                        'command = ["sleep", "1000"]\n')
        assert carrier("run", "-d", "--name", "loose", image, "sleep", "1000").code == 0
        res = carrier("up", "-d", str(tree))
        assert res.code == 0, res.err
        one = str(carrier.record("pair-one")["id"])[:12]
        assert ids(carrier("ps", "-q", "--filter", "label=carrier.tree").out) == [one]
        assert ids(carrier("ps", "-q", "--filter", "label=carrier.tree=pair").out) == [one]
        assert ids(carrier("ps", "-q", "--filter", "label=carrier.tree=other").out) == []
        assert ids(carrier("ps", "-q", "--filter", "label=carrier.tree",
                           "--filter", "label=nope").out) == []
        assert carrier("down", str(tree)).code == 0
        assert carrier("rm", "-f", "loose").code == 0

    def test_health_in_status(self, carrier: Carrier, image: str) -> None:
        """A running container with a health check shows its state in STATUS: Up ... (healthy)."""
        assert carrier("run", "-d", "--name", "hc", "--no-network", "--health-cmd", "true",
                       "--health-interval", "100ms", image, "sleep", "1000").code == 0
        wait_event(carrier, "healthy", 1)
        line = carrier("ps").out.splitlines()[1]
        assert re.search(r"Up \d+ seconds \(healthy\)", line), line
        assert carrier("rm", "-f", "hc").code == 0


class TestImages:
    def test_quiet(self, carrier: Carrier, image: str) -> None:
        """images -q prints each image's short id, once."""
        res = carrier("images", "-q")
        assert res.code == 0, res.err
        table = carrier("images").out.splitlines()[1]
        assert res.out.split() == [table.split()[2]]
