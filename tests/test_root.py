"""Root-only behaviour, run as root by ``scripts/test``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Carrier

pytestmark = pytest.mark.root


def test_root_gets_an_identity_mapped_user_namespace(carrier: Carrier, image: str) -> None:
    """As root, the container still gets its own user namespace (identity-mapped, so files
    keep their owners) and its own PID namespace, and pasta connects it by default."""
    res = carrier("run", "--rm", image, "sh", "-c",
                  "echo $$; cat /proc/self/uid_map; readlink /proc/self/ns/user; ip route")
    lines = res.out.splitlines()
    assert lines[0] == "1", res.err
    assert lines[1].split() == ["0", "0", "4294967295"]
    assert lines[2] != os.readlink("/proc/self/ns/user")
    assert lines[3].startswith("default via ")


def test_elevated_shares_the_host_network(carrier: Carrier, image: str) -> None:
    """--elevated (root only) puts the container in the host's network namespace: it sees the
    host's interfaces and no helper runs."""
    res = carrier("run", "--rm", "--elevated", image, "ls", "/sys/class/net")
    assert sorted(res.out.split()) == sorted(name for _, name in socket.if_nameindex()), res.err
    assert len(res.out.split()) > 1


def test_host_network_keeps_loopback_resolvers(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """In the host's namespace a stub resolver on loopback is reachable, so it is kept."""
    fake = tmp_path / "resolv.conf"
    fake.write_text("nameserver 127.0.0.53\n")
    carrier.env["CARRIER_RESOLV_CONF"] = str(fake)
    res = carrier("run", "--rm", "--network", "host", image, "cat", "/etc/resolv.conf")
    assert res.out == "nameserver 127.0.0.53\n", res.err


def test_a_caller_in_another_cgroup_gets_a_server_of_its_own() -> None:
    """The fork server (and the keeper it forks) lives in the cgroup of the command that started
    it, so its socket's name digests the caller's cgroup: a command from a shell is never forked
    into another cgroup (a systemd unit's, to be killed with it). Root: it makes a cgroup."""
    unified = Path("/sys/fs/cgroup/cgroup.procs").exists()
    group = Path("/sys/fs/cgroup" if unified else "/sys/fs/cgroup/pids") / f"carrier-test-{os.getpid()}"
    code = "from carrier._cli._fastpath import socket_file; print(socket_file())"
    group.mkdir()
    try:
        here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, timeout=60).stdout
        moved = subprocess.run(["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$0" -c "$1"',
                                sys.executable, code], capture_output=True, text=True, check=True,
                               timeout=60).stdout
        again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True, timeout=60).stdout
    finally:
        group.rmdir()  # empty: its only process has exited and been reaped
    assert here == again
    assert here.startswith("/")
    assert moved.startswith("/")
    assert here != moved
