"""``carrier top`` and ``carrier stats --no-stream``, read from the host's /proc for real rootless
containers (with the fork server and without, pasta and slirp4netns)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import container_pid


def in_container(init: int, cmdline: bytes, bound: float = 20) -> int:
    """Bounded poll of /proc for a process running *cmdline* in *init*'s PID namespace (nothing
    announces a process inside a container to the host); its host PID."""
    ns = os.readlink(f"/proc/{init}/ns/pid")
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/ns/pid") == ns and \
                        Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                    return int(pid)
            except OSError:
                continue
        time.sleep(0.02)
    raise AssertionError(f"no process {cmdline!r} in the container within {bound} s")


@pytest.fixture(params=["1", "0"], ids=["fork-server", "no-fork-server"])
def family(request: pytest.FixtureRequest, carrier: Carrier, image: str) -> Iterator[int]:
    """A detached container running `sleep 1000` as PID 1 and `sleep 1001` as its child; the
    host PID of its init."""
    carrier.env["CARRIER_FORK_SERVER"] = request.param
    res = carrier("run", "-d", "--name", "fam", image, "sh", "-c", "sleep 1001 & exec sleep 1000")
    assert res.code == 0, res.err
    init = container_pid(carrier, "fam")
    in_container(init, b"sleep\x001000\x00")
    in_container(init, b"sleep\x001001\x00")
    yield init
    carrier("rm", "-f", "fam")


def rows(out: str) -> list[list[str]]:
    """`top`'s output split into columns (COMMAND, the last, may hold spaces)."""
    lines = out.splitlines()
    count = len(lines[0].split())
    return [line.split(None, count - 1) for line in lines]


def test_top_lists_the_container_processes(carrier: Carrier, family: int) -> None:
    """top shows Podman's default columns for every process of the container, with PIDs and
    users as the container sees them, even with no `ps` in the image."""
    assert carrier("exec", "fam", "rm", "/bin/ps").code == 0
    assert carrier("exec", "-d", "-u", "nobody", "fam", "sleep", "1002").code == 0
    in_container(family, b"sleep\x001002\x00")
    res = carrier("top", "fam")
    assert res.code == 0, res.err
    table = rows(res.out)
    assert table[0] == ["USER", "PID", "PPID", "%CPU", "ELAPSED", "TTY", "TIME", "COMMAND"]
    by_command = {r[-1]: r for r in table[1:]}
    assert set(by_command) == {"sleep 1000", "sleep 1001", "sleep 1002"}
    assert by_command["sleep 1000"][:3] == ["root", "1", "0"]
    assert by_command["sleep 1001"][0] == "root"
    assert by_command["sleep 1001"][2] == "1"
    assert by_command["sleep 1002"][0] == "nobody"
    assert by_command["sleep 1000"][5] == "?"


def test_top_descriptors(carrier: Carrier, family: int) -> None:
    """Named and AIX descriptors choose the columns; hpid is the host PID."""
    res = carrier("top", "fam", "pid,hpid", "%c")
    assert res.code == 0, res.err
    table = rows(res.out)
    assert table[0] == ["PID", "HPID", "COMMAND"]
    assert ["1", str(family), "sleep"] in table[1:]


def test_top_bad_input(carrier: Carrier, family: int) -> None:
    """An unknown descriptor, or a container that does not run, is one line and 125; the
    container runs on."""
    res = carrier("top", "fam", "bogus")
    assert (res.code, res.out) == (125, "")
    assert res.err.startswith("carrier: unknown descriptor: bogus")
    assert res.err.count("\n") == 1
    assert carrier.record("fam")["status"] == "running"
    res = carrier("top", "ghost")
    assert res.code == 125, res.err
    assert res.err.count("\n") == 1


def test_top_of_an_exited_container(carrier: Carrier, image: str) -> None:
    """top of an exited container is refused in one line with 125."""
    assert carrier("run", "--name", "done", image, "true").code == 0
    res = carrier("top", "done")
    assert res.code == 125, res.err
    assert res.err.startswith("carrier: container done has exited")
    carrier("rm", "done")


@pytest.mark.parametrize("network", ["pasta", "slirp4netns"])
def test_stats_no_stream(carrier: Carrier, image: str, network: str) -> None:
    """stats --no-stream shows the container's PIDs, its memory and the bytes its interface
    (eth0 or tap0) sent to a server on host loopback."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        script = (f"(head -c 100000 /dev/zero | nc host.containers.internal {port}) & "
                  "exec sleep 1000")
        res = carrier("run", "-d", "--name", "st", "--network", network, "--host-loopback",
                      image, "sh", "-c", script)
        assert res.code == 0, res.err
        server.settimeout(30)  # a guard
        conn, _ = server.accept()
        with conn:
            got = 0
            while got < 100_000:  # bounded by the guard: each recv is an event
                chunk = conn.recv(65536)
                assert chunk, f"the container sent only {got} bytes"
                got += len(chunk)
    in_container(container_pid(carrier, "st"), b"sleep\x001000\x00")
    res = carrier("stats", "--no-stream", "--format", "json", "st")
    assert res.code == 0, res.err
    (row,) = json.loads(res.out)
    assert row["name"] == "st"
    assert int(row["pids"]) >= 1
    assert row["raw"]["net_output"] >= 100_000
    assert 0 < row["raw"]["mem_pss"] < row["raw"]["mem_limit"]
    table = carrier("stats", "--no-stream")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].startswith("ID")
    assert "MEM USAGE / LIMIT" in lines[0]
    assert "NET IO" in lines[0]
    assert len(lines) == 2
    assert " st " in lines[1]
    carrier("rm", "-f", "st")


def test_stats_streams_until_the_container_ends(carrier: Carrier, image: str) -> None:
    """Without --no-stream, stats prints a table each interval, and ends by itself (exit 0)
    once the container it watches no longer runs."""
    assert carrier("run", "-d", "--name", "st", image, "sleep", "1000").code == 0
    stream = carrier.popen("stats", "st", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert stream.stdout is not None
    try:
        tables = []
        for _ in range(100):  # two tables: each line is an event, the stream's own output
            line = stream.stdout.readline()
            assert line, stream.communicate(timeout=30)
            if line.startswith("ID"):
                tables.append(line)
            elif tables:
                assert " st " in line
            if len(tables) == 2:
                break
        assert len(tables) == 2
        assert carrier("rm", "-f", "st").code == 0
        _, err = stream.communicate(timeout=30)  # a guard: the stream ends with the container
        assert stream.returncode == 0, err
    finally:
        if stream.poll() is None:
            stream.kill()
            stream.wait()


def test_stats_bad_input(carrier: Carrier, image: str) -> None:
    """stats of a container that does not run is one line and 125; its record is unchanged."""
    assert carrier("run", "--name", "done", image, "true").code == 0
    res = carrier("stats", "--no-stream", "done")
    assert res.code == 125, res.err
    assert res.err.startswith("carrier: can only get stats of running containers")
    assert carrier.record("done")["status"] == "exited"
    carrier("rm", "done")
