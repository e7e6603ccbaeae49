"""Helpers shared by the integration tests: processes, PIDs and events, observed for real."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import Carrier


def container_pid(carrier: Carrier, name: str) -> int:
    """The host PID of the container's command (from runc's PID file, via carrier info)."""
    return int(carrier.record(name)["container_pid"])  # type: ignore[arg-type]


def helper_pid(carrier: Carrier, name: str) -> int:
    """The PID that ``network.pid`` names, checked against ``carrier info``."""
    rec = carrier.record(name)
    pid = int((Path(str(rec["Dir"])) / "network.pid").read_text().split()[0])
    assert rec["network"]["helper_pid"] == pid  # type: ignore[index]
    return pid


def wait_pidfd(pid: int, bound: float = 30) -> None:
    """Wait for *pid* to exit (an event on its pidfd), failing after *bound* seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], bound)[0], f"process {pid} did not exit"
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Whether *pid* is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def pid_of(cmdline: bytes, bound: float = 20) -> int:
    """Bounded poll of /proc for the process running exactly *cmdline* (nothing announces a
    process inside a container to the host)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:  # ours only: another user's tests may run the same command
                if os.stat(f"/proc/{pid}").st_uid == os.getuid() and \
                        Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                    return int(pid)
            except OSError:
                continue
        time.sleep(0.02)
    raise AssertionError(f"no process {cmdline!r} within {bound} s")


def foreground(pid: int, bound: float = 20) -> None:
    """Bounded poll until *pid* is the foreground process group of its terminal (a shell hands
    the terminal to a job just after starting it; a Ctrl-C before that goes to the shell)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        if fields[2] == fields[5]:  # pgrp == tpgid
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never had the terminal within {bound} s")


def events(carrier: Carrier, kind: str | None = None) -> list[dict[str, object]]:
    """The root's lifecycle events, optionally of one type."""
    path = carrier.root / "events.jsonl"
    found = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in found if kind is None or e["type"] == kind]


def wait_event(carrier: Carrier, kind: str, count: int, bound: float = 20) -> None:
    """Bounded poll of the events file until *count* events of *kind* were written (they are
    written by another process, which has nothing to signal on)."""
    path = carrier.root / "events.jsonl"
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if sum(json.loads(line)["type"] == kind for line in lines) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} {kind!r} events within {bound} s")


class Pty:
    """carrier running on a real pseudo-terminal, driven like a person at a keyboard."""

    def __init__(self, carrier: Carrier, *args: str) -> None:
        self.master, self.slave = os.openpty()
        self.settings = termios.tcgetattr(self.slave)

        def controlling_tty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(carrier.argv(*args), env=carrier.env, stdin=self.slave,
                                     stdout=self.slave, stderr=self.slave,
                                     preexec_fn=controlling_tty)
        self.seen = b""

    def expect(self, needle: bytes, bound: float = 20) -> bytes:
        """Read the screen until *needle* appears (bounded; every read is an event); return
        what came before it."""
        deadline = time.monotonic() + bound
        while needle not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{needle!r} not seen; screen: {self.seen[-400:]!r}"
            if select.select([self.master], [], [], remaining)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        assert needle in self.seen, self.seen[-400:]
        before = self.seen[:self.seen.index(needle)]
        self.seen = self.seen[self.seen.index(needle) + len(needle):]
        return before

    def type(self, text: bytes) -> None:
        """Type at the keyboard."""
        os.write(self.master, text)

    def resize(self, rows: int, cols: int) -> None:
        """Resize the window (the kernel sends SIGWINCH to carrier)."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self) -> int:
        """Wait for carrier to exit and return its exit code."""
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        os.close(self.slave)
        return code


def wait_unsupervised(record: dict[str, object], bound: float = 30) -> None:
    """Wait until nothing supervises the container of *record* (``carrier info``) any more: its
    supervisor lock is free (or gone with the container), whether a process of its own or a
    group in the keeper held it.
    A bounded poll: a released lock announces nothing."""
    lock = Path(str(record["Dir"])) / "supervisor.lock"
    deadline = time.monotonic() + bound
    while True:
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # removed: supervised by nobody
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            assert time.monotonic() < deadline, f"{record['Name']} is still supervised"
        finally:
            os.close(fd)
        time.sleep(0.02)


@contextlib.contextmanager
def own_supervisor(carrier: Carrier, really: bool = True) -> Iterator[None]:
    """Within: detached containers get a supervisor process of their own, not a group in the
    keeper (``CARRIER_KEEPER=0``), so that a test can kill one container's supervisor alone."""
    if not really:
        yield
        return
    carrier.env["CARRIER_KEEPER"] = "0"
    try:
        yield
    finally:
        del carrier.env["CARRIER_KEEPER"]
