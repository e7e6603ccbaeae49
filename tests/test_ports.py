"""Published ports with the real helpers, rootless, for pasta and slirp4netns alike.

Clients on the host's loopback reach servers inside through ``-p``: TCP through the helper or
Carrier's forwarder, UDP through Carrier's relay. Traffic goes only to 127.0.0.1 and to the
container's own namespace (CI runs this inside a network namespace whose uplink leads nowhere).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Carrier
from helpers import alive, wait_pidfd, wait_unsupervised
from test_network import HELPERS, free_port

# Inside a container: the address the helper gave its interface (the only global IPv4 one).
OWN_ADDRESS = "$(ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1)"
BINDS = {"wildcard": "0.0.0.0", "loopback": "127.0.0.1", "own address": OWN_ADDRESS}


@pytest.fixture(params=HELPERS)
def helper(request: pytest.FixtureRequest) -> str:
    """Every port test runs with each helper."""
    return str(request.param)


def test_tcp_published(carrier: Carrier, image: str, helper: str) -> None:
    """A server inside is reached from the host through -p 127.0.0.1:P:80."""
    port = free_port()
    script = "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www"
    assert carrier("run", "-d", "--name", "web", "--network", helper, "-p",
                   f"127.0.0.1:{port}:80", image, "sh", "-c", script).code == 0
    assert _http_get(port, "/index.html").endswith(b"published\n")
    assert carrier("rm", "-f", "web").code == 0


@pytest.mark.parametrize("bind", list(BINDS))
def test_udp_published(carrier: Carrier, image: str, helper: str, bind: str) -> None:
    """A UDP server inside, bound to the wildcard, to loopback or to the container's own
    address, gets datagrams through -p .../udp and its answers come back."""
    port = free_port(socket.SOCK_DGRAM)
    assert carrier("run", "-d", "--name", "echo", "--network", helper, "-p",
                   f"127.0.0.1:{port}:5353/udp", image, "sh", "-c",
                   f"exec udpecho 5353 {BINDS[bind]}").code == 0
    assert _udp_echo(port, b"ping") == b"ping"
    assert _udp_echo(port, b"again") == b"again"
    assert carrier("rm", "-f", "echo").code == 0


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_every_address(carrier: Carrier, image: str, helper: str, proto: str) -> None:
    """Without a host address, the port is published on IPv4 and IPv6 loopback alike."""
    port = free_port(socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    server = "tcpecho" if proto == "tcp" else "udpecho"
    assert carrier("run", "-d", "--name", "echo", "--network", helper, "-p",
                   f"{port}:7/{proto}", image, server, "7").code == 0
    for host in ("127.0.0.1", "::1"):
        if proto == "tcp":
            assert _tcp_echo(port, host.encode(), retry=True, host=host) == host.encode()
        else:
            assert _udp_echo(port, host.encode(), host=host) == host.encode()
    assert carrier("rm", "-f", "echo").code == 0


def test_taken_port_fails_cleanly(carrier: Carrier, image: str, helper: str) -> None:
    """A host port already in use fails the start with a clear error and no leftovers."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = carrier("run", "--rm", "--network", helper, "-p", f"127.0.0.1:{port}:80",
                      image, "true")
    assert res.code == 125
    assert f"127.0.0.1:{port}/tcp is already in use" in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not any((carrier.root / "containers").iterdir())


CONNECTIONS = 64


def test_concurrent_connections(carrier: Carrier, image: str, helper: str) -> None:
    """64 connections through -p, opened in one burst as redis-benchmark opens its clients, each
    echo their own 64 KiB back intact after a half-close."""
    port = free_port()
    assert carrier("run", "-d", "--name", "echo", "--network", helper, "-p",
                   f"127.0.0.1:{port}:7", image, "tcpecho", "7").code == 0
    _tcp_echo(port, b"ready?", retry=True)
    socks = [socket.socket() for _ in range(CONNECTIONS)]
    try:
        for sock in socks:  # all connects started before any finishes (slirp4netns's own
            sock.setblocking(False)  # forwarder stalled half of such a burst for ever)
            sock.connect_ex(("127.0.0.1", port))

        def one(i: int) -> bool:
            sock = socks[i]
            assert select.select([], [sock], [], 60)[1], "connect not done in 60 s"  # a guard
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            sock.settimeout(60)  # a guard: a stalled connection fails, never hangs the test
            payload = i.to_bytes(2, "big") + os.urandom(64 * 1024)
            return _exchange(sock, payload) == payload

        with ThreadPoolExecutor(CONNECTIONS) as pool:
            results = list(pool.map(one, range(CONNECTIONS)))
    finally:
        for sock in socks:
            sock.close()
    assert results == [True] * CONNECTIONS
    assert carrier("rm", "-f", "echo").code == 0


def test_reset_is_passed_on(carrier: Carrier, image: str, helper: str) -> None:
    """A connection the server inside resets is reset for the client too, not ended as if the
    answer were complete."""
    reset, ready = free_port(), free_port()
    script = ("tcpecho 7 0.0.0.0 reset & "
              "until netstat -ltn | grep -q ':7 '; do sleep 0.05; done; exec tcpecho 8")
    assert carrier("run", "-d", "--name", "reset", "--network", helper,
                   "-p", f"127.0.0.1:{reset}:7", "-p", f"127.0.0.1:{ready}:8",
                   image, "sh", "-c", script).code == 0
    _tcp_echo(ready, b"up", retry=True)  # port 8 serves once port 7 listens
    with socket.create_connection(("127.0.0.1", reset), timeout=5) as s:
        s.sendall(b"x")
        with pytest.raises(ConnectionResetError):
            s.recv(1)
    assert carrier("rm", "-f", "reset").code == 0


@pytest.mark.parametrize("bind", list(BINDS))
def test_tcp_reaches_each_bind(carrier: Carrier, image: str, helper: str, bind: str) -> None:
    """A TCP server inside, bound to the wildcard, to loopback or to the container's own
    address, is reached through -p."""
    port = free_port()
    assert carrier("run", "-d", "--name", "echo", "--network", helper, "-p",
                   f"127.0.0.1:{port}:7", image, "sh", "-c", f"exec tcpecho 7 {BINDS[bind]}").code == 0
    assert _tcp_echo(port, b"hello", retry=True) == b"hello"
    assert carrier("rm", "-f", "echo").code == 0


@pytest.mark.parametrize("ending", ["forwarder-kill", "supervisor-kill"])
def test_forwarder_is_a_member(carrier: Carrier, image: str, helper: str, ending: str) -> None:
    """The TCP forwarder's death ends the group (helper-exited, 125); the supervisor's death
    ends the forwarder; nothing is left either way."""
    port = free_port()
    assert carrier("run", "-d", "--name", "f", "--network", helper, "--stop-timeout", "0.5",
                   "-p", f"127.0.0.1:{port}:7", image, "tcpecho", "7").code == 0
    rec = carrier.record("f")
    forwarder = int(rec["network"]["forwarder_pid"])  # type: ignore[index]
    supervisor = int(rec["supervisor_pid"])  # type: ignore[arg-type]
    assert alive(forwarder)
    assert _tcp_echo(port, b"up", retry=True) == b"up"
    os.kill(forwarder if ending == "forwarder-kill" else supervisor, signal.SIGKILL)
    wait_unsupervised(rec)
    wait_pidfd(forwarder)
    carrier("ps", "-a")  # the next command reconciles what a dead supervisor left
    rec = carrier.record("f")
    expected = {"forwarder-kill": (125, "helper-exited: the TCP port forwarder exited (status 137)"),
                "supervisor-kill": (137, "supervisor-died")}[ending]
    assert (rec["exit_code"], str(rec["reason"])[: len(expected[1])]) == expected
    with pytest.raises(ConnectionRefusedError):  # the host port is released
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    assert carrier("rm", "f").code == 0


@pytest.fixture
def answer_after_eof() -> Iterator[int]:
    """A server on host 127.0.0.1 that reads until the client half-closes, then answers and
    closes; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    while conn.recv(65536):
                        pass
                    conn.sendall(b"answer\n")

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


@pytest.mark.parametrize("helper", [
    pytest.param("pasta", marks=pytest.mark.xfail(strict=True, reason=(
        "pasta 2023-03-09 never passes the host's FIN on once the container has half-closed "
        "(by hand too, with pasta's defaults): docs/networking.md"))),
    "slirp4netns",
])
def test_half_close_to_host(carrier: Carrier, image: str, helper: str, answer_after_eof: int) -> None:
    """A client inside that half-closes towards host loopback (busybox nc) gets the whole
    answer and the end of it, so it exits by itself."""
    res = carrier("run", "--rm", "--network", helper, "--host-loopback", image, "sh", "-c",
                  f"printf request | timeout 5 nc host.containers.internal {answer_after_eof}; "
                  "echo rc=$?")
    assert res.out == "answer\nrc=0\n", res.err


def _exchange(s: socket.socket, payload: bytes) -> bytes:
    """Send *payload*, half-close, and read until the server closes."""

    def send() -> None:
        with contextlib.suppress(OSError):  # a reset: the receiving side below reports it
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()  # send and receive at once: neither side may wait for the other's buffers
    got = bytearray()
    try:
        while chunk := s.recv(65536):
            got += chunk
    finally:
        sender.join()  # bounded: the socket's timeout ends a stalled send too
    return bytes(got)


def _tcp_echo(port: int, payload: bytes, *, retry: bool = False, bound: float = 15,
              host: str = "127.0.0.1") -> bytes:
    """Echo *payload* once through the published port; with *retry*, until the server inside
    answers (bounded: it starts on its own schedule)."""
    deadline = time.monotonic() + bound
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                got = _exchange(s, payload)
            if got == payload or not retry:
                return got
        except OSError:
            if not retry:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"no TCP echo on port {port} within {bound} s")
        time.sleep(0.05)  # bounded poll: nothing announces the server's start


def _http_get(port: int, path: str, bound: float = 15) -> bytes:
    """GET from a published port, retrying (bounded) until the server inside has started."""
    deadline = time.monotonic() + bound
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
            if data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]:
                return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no HTTP answer on port {port} within {bound} s")
        time.sleep(0.05)  # bounded poll: the server inside starts on its own schedule


def _udp_echo(port: int, payload: bytes, bound: float = 15, host: str = "127.0.0.1") -> bytes:
    """Send *payload* until it comes back (bounded): the listener inside starts on its own."""
    deadline = time.monotonic() + bound
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, port))
        s.settimeout(0.3)
        while time.monotonic() < deadline:
            s.send(payload)
            try:
                return s.recv(100)
            except OSError:
                continue
    raise AssertionError(f"no UDP echo on port {port} within {bound} s")
