"""Signals and the foreground (issue #12, items 5-8): only the container gets a terminal's
signals, every catchable signal is passed on or survived, an interrupted start is one line,
and ``rm -f`` cuts a stop in flight short. Real terminals (a pty), real signals."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest
from conftest import Carrier
from helpers import Pty, alive, wait_event, wait_pidfd

TRAPS = "; ".join(f'trap "echo got-{s}" {s}' for s in ("HUP", "QUIT", "USR1", "USR2", "PIPE"))
LOOP = "echo ready; while :; do sleep 0.1; done"


def _readline(proc: subprocess.Popen[str], bound: float = 20) -> str:
    """The next line of *proc*'s stdout, waited for as an event (bounded)."""
    assert proc.stdout is not None
    assert select.select([proc.stdout], [], [], bound)[0], "no output in time"
    return proc.stdout.readline()


class TestTerminal:
    def test_ctrl_c_reaches_only_the_container(self, carrier: Carrier, image: str) -> None:
        """Ctrl-C on the terminal goes to the container, which exits 130 as it chose; no
        other member of the group dies of it (it used to kill the holder: holder-exited)."""
        term = Pty(carrier, "run", "--rm", image, "sh", "-c",
                   f'trap "echo got-int; exit 130" INT; {LOOP}')
        term.expect(b"ready")
        wait_event(carrier, "started", 1)
        term.type(b"\x03")
        term.expect(b"got-int")
        assert term.close() == 130
        assert b"holder" not in term.seen

    def test_second_ctrl_c_kills(self, carrier: Carrier, image: str) -> None:
        """A container that ignores Ctrl-C (sleep as PID 1) is killed by the second one."""
        term = Pty(carrier, "run", "--rm", image, "sh", "-c", f'trap "echo got-int" INT; {LOOP}')
        term.expect(b"ready")
        wait_event(carrier, "started", 1)
        term.type(b"\x03")
        term.expect(b"got-int")
        term.type(b"\x03")
        assert term.close() == 137


class TestForwarding:
    @pytest.mark.parametrize("sig", ["HUP", "QUIT", "USR1", "USR2", "PIPE"])
    def test_foreground_passes_the_signal_on(self, carrier: Carrier, image: str, sig: str) -> None:
        """A signal sent to a foreground ``carrier run`` reaches the container, and the
        supervisor lives on (these signals used to kill it and leave the container behind)."""
        proc = carrier.popen("run", "--rm", image, "sh", "-c",
                             f'{TRAPS}; trap "echo bye; exit 0" TERM; {LOOP}',
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert _readline(proc) == "ready\n"
            wait_event(carrier, "started", 1)  # Carrier knows it runs: signals now go to it
            proc.send_signal(getattr(signal, f"SIG{sig}"))
            assert _readline(proc) == f"got-{sig}\n"
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert _readline(proc) == "bye\n"
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            proc.communicate()

    def test_detached_supervisor_survives_stray_signals(self, carrier: Carrier, image: str) -> None:
        """Stray signals to a detached supervisor neither end it nor its container; SIGTERM
        still stops the container."""
        assert carrier("run", "-d", "--name", "d", image, "sleep", "100").code == 0
        pid = carrier.record("d")["supervisor_pid"]
        assert isinstance(pid, int)
        for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE,
                    signal.SIGALRM, signal.SIGINT):
            os.kill(pid, sig)
        assert carrier("exec", "d", "true").code == 0  # the supervisor handled them all
        assert alive(pid)
        os.kill(pid, signal.SIGTERM)
        wait_pidfd(pid)
        assert carrier.record("d")["reason"] == "stop-requested"
        carrier("rm", "d")


class TestEarlySignals:
    @pytest.mark.parametrize("delay", [0.0, 0.03, 0.06, 0.1, 0.15, 0.2, 0.3, 0.45])
    def test_sigint_during_start_is_one_line(self, carrier: Carrier, image: str,
                                             delay: float) -> None:
        """Ctrl-C at any moment of start-up ends the run cleanly: at most one line, no
        traceback, nothing left (the moments span loading, creating and starting)."""
        proc = carrier.popen("run", "--rm", image, "sleep", "1", stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(delay)  # fault injection at a chosen moment, not a wait for anything
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        if "init_import_site" in err and proc.returncode == 1:
            # The interrupt landed in CPython's own start (importing `site`), before any line
            # of Carrier ran: CPython's message, and nothing was created.
            assert not any((carrier.root / "containers").iterdir())
            return
        assert "Traceback" not in err, err
        assert len(err.strip().splitlines()) <= 1, err
        # -2: killed before Python ran a line (its handler is not installed yet); 130: the start
        # was given up; 0: the command ran (sleep as PID 1 ignores the SIGINT passed on to it).
        assert proc.returncode in (-2, 0, 130), err
        if err:
            assert err.startswith("carrier: "), err
        assert not any((carrier.root / "containers").iterdir())

    def test_no_descriptors_to_spare(self, carrier: Carrier, image: str) -> None:
        """With a very low open-files limit the run fails (or not) in one line, never with a
        traceback from the background import of pyroute2."""
        res = carrier("run", "--rm", "--network", "pasta", image, "true",
                      prefix=["prlimit", "--nofile=24:24"])
        assert "Traceback" not in res.err, res.err
        if res.code != 0:
            assert res.code == 125
            assert len(res.err.strip().splitlines()) == 1, res.err


class TestRemoveForce:
    def test_rm_f_cuts_a_stop_in_flight_short(self, carrier: Carrier, image: str) -> None:
        """``rm -f`` kills at once, even while a ``stop -t 60`` of a container that ignores
        SIGTERM is waiting (it used to wait for that stop and fail)."""
        script = f'trap "echo got-term" TERM; {LOOP}'
        assert carrier("run", "-d", "--name", "stubborn", image, "sh", "-c", script).code == 0
        stopping = carrier.popen("stop", "-t", "60", "stubborn", stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while "got-term" not in carrier("logs", "stubborn").out:  # the stop is in flight
            assert time.monotonic() < deadline, "the stop never sent SIGTERM"
            time.sleep(0.05)
        res = carrier("rm", "-f", "stubborn", timeout=30)
        assert (res.code, res.out) == (0, "stubborn\n"), res.err
        assert stopping.wait(timeout=30) == 0
        stopping.communicate()
        assert carrier("ps", "-a", "--format", "json").out.strip() == "[]"


def test_a_finalizers_exception_is_no_traceback() -> None:
    """An exception Python cannot raise (a finalizer's, of an object a Ctrl-C left half built,
    whose repr fails too, as an interrupted event loop's) prints nothing on a command's stderr:
    the interrupt is already reported in one line."""
    script = (
        "import gc\n"
        "from carrier._cli import run_main\n"
        "run_main(['version'])\n"
        "class Half:\n"
        "    def __repr__(self): raise AttributeError('half built')\n"
        "    def __del__(self): raise RuntimeError('finalizer')\n"
        "h = Half(); del h; gc.collect()\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr
