"""A container's control socket is served per caller: a malformed, silent or oversized request
ends only that caller's connection, never the supervisor or its container."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from conftest import Carrier


def _connect(carrier: Carrier, name: str) -> socket.socket:
    """A connection to container *name*'s control socket (reached through a directory fd, as
    Carrier reaches it: the path can be longer than a socket address allows)."""
    cid = str(carrier.record(name)["id"])
    fd = os.open(Path(carrier.root) / "containers" / cid, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)  # a guard
        sock.connect(f"/proc/self/fd/{fd}/control.sock")
    finally:
        os.close(fd)
    return sock


def test_bad_requests_end_only_their_connection(carrier: Carrier, image: str) -> None:
    """Requests that are not one JSON object, that ask for attach and exec -d at once, or that
    say nothing while others are served, are dropped; the container runs on and still stops on
    request."""
    assert carrier("run", "-d", "--name", "box", "--network", "none", image,
                   "sleep", "1000").code == 0
    silent = _connect(carrier, "box")  # says nothing: must not hold up the requests below
    try:
        for message in (b"[1]\n", b'"x"\n', b"not json\n",
                        b'{"attach": {}, "exec": {"argv": ["true"]}}\n'):
            with _connect(carrier, "box") as sock:
                sock.sendall(message)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):  # until the supervisor closes it
                    pass
        assert carrier("exec", "box", "true").code == 0
        assert carrier.record("box")["status"] == "running"
        assert carrier("exec", "-d", "box", "true").code == 0  # the socket still serves
    finally:
        silent.close()
    assert carrier("stop", "-t", "0", "box").code == 0
    assert carrier.record("box")["status"] == "exited"


def test_exec_d_with_a_large_environment(carrier: Carrier, image: str) -> None:
    """An exec -d request larger than one read (argv and a 40 KiB environment) reaches the
    supervisor whole, and the command sees the last variable."""
    assert carrier("run", "-d", "--name", "box", "--network", "none", image,
                   "sleep", "1000").code == 0
    env = [arg for i in range(400) for arg in ("-e", f"VAR{i}={'x' * 100}")]
    res = carrier("exec", "-d", *env, "-e", "LAST=here", "box", "sh", "-c",
                  'echo "$LAST" > /tmp/last')
    assert res.code == 0, res.err
    res = carrier("exec", "box", "sh", "-c", "i=0; while [ ! -s /tmp/last ] && [ $i -lt 2000 ]; do "
                  "usleep 10000; i=$((i + 1)); done; cat /tmp/last", timeout=60)
    assert res.out.strip() == "here"
    assert carrier("rm", "-f", "box").code == 0
