"""``carrier attach`` and the detach keys, driven through a real terminal (a pty) like a person
at a keyboard (issue #13): a ``run -dit`` shell attached to, resized, detached from and
attached to again; a ``run -d`` container's streams; bad input."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import termios
import time

import pytest
from conftest import Carrier
from helpers import Pty, wait_event

from carrier._runtime._terminal import DetachKeys, parse_detach_keys


def _raw(term: Pty, bound: float = 20) -> None:
    """Bounded poll until carrier has put the terminal in raw mode (the session has begun:
    keys typed from now on travel as bytes)."""
    deadline = time.monotonic() + bound
    while termios.tcgetattr(term.slave) == term.settings:
        if time.monotonic() > deadline or term.proc.poll() is not None:
            with contextlib.suppress(AssertionError):
                term.expect(b"\0", bound=0.5)  # what it said, for the message
            raise AssertionError(f"the terminal never went raw (exit {term.proc.poll()}): "
                                 f"{term.seen[-400:]!r}")
        time.sleep(0.01)


def _size_seen(term: Pty, size: bytes, bound: float = 20) -> None:
    """Type ``stty size`` until the container's terminal reports *size* (bounded poll: nothing
    inside announces a new size)."""
    deadline = time.monotonic() + bound
    while True:
        term.type(b"stty size\r")
        if size in term.expect(b"# "):
            return
        assert time.monotonic() < deadline, f"the container's terminal never got {size!r}"
        time.sleep(0.1)


class TestTerminal:
    def test_attach_detach_attach_exit(self, carrier: Carrier, image: str) -> None:
        """attach to ``run -dit sh``: typed commands run, the size follows ours, ctrl-p ctrl-q
        detaches with the container left running, a second attach works, and ``exit 3`` ends
        it with 3; our terminal's settings are restored each time."""
        assert carrier("run", "-dit", "--name", "t", image, "sh").code == 0
        term = Pty(carrier, "attach", "t")
        term.resize(30, 90)
        _raw(term)
        term.type(b"echo hi-$((1+2))\r")
        term.expect(b"hi-3")
        _size_seen(term, b"30 90")
        term.resize(33, 101)
        _size_seen(term, b"33 101")
        term.type(b"\x10\x11")  # ctrl-p, ctrl-q
        assert term.proc.wait(timeout=30) == 0
        assert termios.tcgetattr(term.slave) == term.settings, "settings restored on detach"
        term.close()
        assert carrier.record("t")["status"] == "running"

        again = Pty(carrier, "attach", "--detach-keys", "ctrl-x", "t")
        again.resize(40, 120)
        _raw(again)
        _size_seen(again, b"40 120")  # the caller's size, applied at attach
        again.type(b"exit 3\r")
        assert again.proc.wait(timeout=30) == 3
        assert termios.tcgetattr(again.slave) == again.settings, "settings restored on exit"
        again.close()
        wait_event(carrier, "cleaned", 1)
        record = carrier.record("t")
        assert (record["status"], record["exit_code"]) == ("exited", 3)
        assert carrier("rm", "t").code == 0

    def test_killed_attach_restores_the_terminal(self, carrier: Carrier, image: str) -> None:
        """SIGTERM or SIGHUP to attach restores our terminal's settings and leaves the
        container running."""
        assert carrier("run", "-dit", "--name", "k", image, "sh").code == 0
        for sig in (signal.SIGTERM, signal.SIGHUP):
            term = Pty(carrier, "attach", "k")
            _raw(term)
            term.type(b"echo on-$((4+4))\r")
            term.expect(b"on-8")
            term.proc.send_signal(sig)
            assert term.proc.wait(timeout=30) == -sig
            assert termios.tcgetattr(term.slave) == term.settings, f"settings restored on {sig}"
            term.close()
        assert carrier.record("k")["status"] == "running"
        assert carrier("rm", "-f", "k").code == 0

    def test_exit_code_of_a_removed_container(self, carrier: Carrier, image: str) -> None:
        """The exit code reaches attach before a ``--rm`` container's record is gone."""
        assert carrier("run", "-dit", "--rm", "--name", "r", image, "sh").code == 0
        term = Pty(carrier, "attach", "r")
        _raw(term)
        term.type(b"exit 4\r")
        assert term.close() == 4
        wait_event(carrier, "cleaned", 1)
        assert carrier("ps", "-a", "-q").out == ""

    def test_start_attach_to_running(self, carrier: Carrier, image: str) -> None:
        """``start -ai`` on a running ``-t`` container attaches to it; its keys detach."""
        assert carrier("run", "-dit", "--name", "s", image, "sh").code == 0
        term = Pty(carrier, "start", "-ai", "--detach-keys", "ctrl-a,d", "s")
        _raw(term)
        term.type(b"echo via-$((2*3))\r")
        term.expect(b"via-6")
        term.type(b"\x01d")
        assert term.close() == 0
        assert carrier.record("s")["status"] == "running"
        assert carrier("rm", "-f", "s").code == 0

    def test_foreground_run_passes_keys_on(self, carrier: Carrier, image: str) -> None:
        """A foreground ``run -it`` cannot detach (it is the supervisor): ctrl-p ctrl-q reach
        the container's terminal as typed."""
        term = Pty(carrier, "run", "-it", "--rm", image, "sh", "-c",
                   "stty raw -echo; echo ready; head -c 2 | od -An -tx1")
        term.expect(b"ready")
        term.type(b"\x10\x11")
        term.expect(b"10 11")
        assert term.close() == 0


class TestStreams:
    def test_output_from_now_on(self, carrier: Carrier, image: str) -> None:
        """attach to ``run -d`` streams new stdout and stderr apart (not what came before) and
        exits with the container's exit code."""
        script = ("echo early; while [ ! -e /tmp/go ]; do echo tick; sleep 0.05; done; "
                  "echo out-1; echo err-1 >&2; echo out-2; exit 5")
        assert carrier("run", "-d", "--name", "s", image, "sh", "-c", script).code == 0
        deadline = time.monotonic() + 20
        while "early" not in carrier("logs", "s").out:  # bounded: the log tells no one
            assert time.monotonic() < deadline, "no early output"
            time.sleep(0.05)
        proc = subprocess.Popen(carrier.argv("attach", "s"), env=carrier.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 20
        while b"tick\n" not in seen:  # attached: new output arrives
            remaining = deadline - time.monotonic()
            assert remaining > 0, seen
            assert select.select([proc.stdout], [], [], remaining)[0], seen
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, proc.communicate(timeout=60)
            seen += chunk
        assert carrier("exec", "s", "touch", "/tmp/go").code == 0
        out, err = proc.communicate(timeout=60)
        out = seen + out
        assert (proc.returncode, err) == (5, b"err-1\n"), out
        assert out.endswith(b"tick\nout-1\nout-2\n"), out
        assert set(out.splitlines()[:-2]) == {b"tick"}, out  # nothing from before the attach
        assert carrier("rm", "s").code == 0


    def test_client_gone_mid_output(self, carrier: Carrier, image: str) -> None:
        """An attach killed while output is still on its way (its socket reset) ends only its
        own session: the container keeps running."""
        script = ("while [ ! -e /tmp/go ]; do echo tick; sleep 0.05; done; seq 1 300000; "
                  "exec sleep 1000")
        assert carrier("run", "-d", "--name", "f", image, "sh", "-c", script).code == 0
        proc = subprocess.Popen(carrier.argv("attach", "f"),
                                env={**carrier.env, "CARRIER_FORK_SERVER": "0"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        seen = b""
        while b"tick\n" not in seen:  # attached
            assert time.monotonic() < deadline, seen
            assert select.select([proc.stdout], [], [], 20)[0], seen
            seen += os.read(proc.stdout.fileno(), 65536)
        assert carrier("exec", "f", "touch", "/tmp/go").code == 0
        # Its stdout is no longer read: once the burst has filled the pipe and the socket's
        # buffers, it is killed with output unread, and its socket is reset.
        deadline = time.monotonic() + 20
        while b"300000" not in carrier("logs", "--tail", "1", "f").out.encode():
            assert time.monotonic() < deadline, "the burst never ended"
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        again = subprocess.Popen(carrier.argv("attach", "f"), env=carrier.env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        assert again.stdout is not None
        seen, deadline = b"", time.monotonic() + 20
        while b"again\n" not in seen:  # bounded: written until the new session shows it
            assert time.monotonic() < deadline, (seen, again.poll())
            assert carrier("exec", "f", "sh", "-c", "echo again > /proc/1/fd/1").code == 0
            if select.select([again.stdout], [], [], 0.2)[0]:
                chunk = os.read(again.stdout.fileno(), 65536)
                assert chunk, again.communicate(timeout=30)
                seen += chunk
        assert carrier.record("f")["status"] == "running"
        assert carrier("rm", "-f", "f").code == 0
        assert again.wait(timeout=30) == 137
        again.stdout.close()
        assert again.stderr is not None
        again.stderr.close()


class TestBadInput:
    def test_refused(self, carrier: Carrier, image: str) -> None:
        """attach to a missing or exited container and bad --detach-keys (attach, run,
        start) are one line, 125, and nothing is created."""
        assert carrier("run", "--name", "done", image, "true").code == 0
        cases = [(["attach", "ghost"], "no such container"),
                 (["attach", "done"], "you can only attach to running containers"),
                 (["attach", "--detach-keys", "ctrl-1", "done"], "invalid --detach-keys"),
                 (["run", "-d", "--detach-keys", "ctrl-p,xy", image, "true"], "unknown key 'xy'"),
                 (["start", "-a", "--detach-keys", ",", "done"], "invalid --detach-keys")]
        for args, message in cases:
            res = carrier(*args)
            assert res.code == 125, (args, res)
            assert len(res.err.splitlines()) == 1, (args, res)
            assert res.err.startswith("carrier: ") and message in res.err, (args, res)  # noqa: PT018
        assert len(list((carrier.root / "containers").iterdir())) == 1
        assert carrier.record("done")["status"] == "exited"
        assert carrier("rm", "done").code == 0


@pytest.mark.parametrize(("keys", "typed", "passed", "detached"), [
    ("ctrl-p,ctrl-q", b"ab\x10c", b"ab\x10c", False),  # a prefix, then not: typed as it was
    ("ctrl-p,ctrl-q", b"x\x10\x10\x11y", b"x\x10", True),  # a repeated first key restarts
    ("ctrl-a,d", b"\x01d", b"", True),
    ("", b"\x10\x11", b"\x10\x11", False),  # disabled
])
def test_detach_keys(keys: str, typed: bytes, passed: bytes, detached: bool) -> None:
    """The detach sequence is found in typed input, and everything else passes on unchanged."""
    assert DetachKeys(parse_detach_keys(keys)).feed(typed) == (passed, detached)
