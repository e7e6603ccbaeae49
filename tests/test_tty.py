"""``run -t`` and ``run -it``: a real pseudo-terminal for the container, driven through a real
terminal (a pty) like a person at a keyboard (issue #13, interactive runs)."""

from __future__ import annotations

import subprocess
import termios
import time

from conftest import Carrier
from helpers import Pty, foreground, pid_of, wait_event


class TestRunTerminal:
    def test_interactive_session(self, carrier: Carrier, image: str) -> None:
        """``run -it``: prompt, window size and its changes, Ctrl-C inside, the exit code,
        and the terminal's settings restored afterwards."""
        term = Pty(carrier, "run", "-it", "--rm", image, "sh")
        term.resize(24, 80)
        term.expect(b"# ")
        assert termios.tcgetattr(term.slave) != term.settings, "raw mode during the session"
        term.type(b"stty size; tty; echo $TERM\r")
        term.expect(b"24 80\r\n/dev/pts/0\r\nxterm")
        term.resize(33, 101)
        deadline = time.monotonic() + 20  # the new size reaches the container's terminal
        while True:
            term.type(b"stty size\r")
            if b"33 101" in term.expect(b"# "):
                break
            assert time.monotonic() < deadline, "the container's terminal never got the new size"
            time.sleep(0.1)  # bounded poll: nothing inside announces the size
        term.type(b"sleep 100\r")
        foreground(pid_of(b"sleep\x00100\x00"))
        term.type(b"\x03")  # a byte in raw mode: the container's terminal makes it SIGINT
        term.type(b"echo after-$?\r")
        term.expect(b"after-130")
        term.type(b"exit 3\r")
        assert term.proc.wait(timeout=30) == 3
        assert termios.tcgetattr(term.slave) == term.settings, "settings restored"
        term.close()

    def test_tty_on_a_terminal_without_input(self, carrier: Carrier, image: str) -> None:
        """``run -t`` alone, from a terminal: the command has a terminal and its exit code is
        ours."""
        term = Pty(carrier, "run", "-t", "--rm", image, "sh", "-c", "tty; exit 4")
        term.expect(b"/dev/pts/0\r\n")
        assert term.close() == 4

    def test_tty_without_a_terminal_of_ours(self, carrier: Carrier, image: str) -> None:
        """``run -t`` piped (as in CI): the command still has a terminal (CRLF line ends), its
        output reaches our stdout whole and byte for byte, and its exit code is ours."""
        res = subprocess.run(
            carrier.argv("run", "-t", "--rm", image, "sh", "-c", "tty; seq 1 2000 | tail -1; exit 4"),
            env=carrier.env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert (res.returncode, res.stdout) == (4, b"/dev/pts/0\r\n2000\r\n"), res.stderr

    def test_detached_tty_output_is_logged(self, carrier: Carrier, image: str) -> None:
        """``run -d -t``: the container's terminal output goes to its log."""
        assert carrier("run", "-d", "-t", "--name", "dt", image, "sh", "-c", "tty").code == 0
        wait_event(carrier, "cleaned", 1)
        logged = subprocess.run(carrier.argv("logs", "dt"), env=carrier.env, capture_output=True,
                                timeout=60, check=True)
        assert (logged.stdout, logged.stderr) == (b"/dev/pts/0\r\n", b"")
        carrier("rm", "dt")

    def test_it_needs_a_terminal(self, carrier: Carrier, image: str) -> None:
        """``run -it`` with no terminal on standard input is refused in one line, 125, as
        Docker refuses it, and nothing is created."""
        res = carrier("run", "-it", "--rm", image, "sh")
        assert res.code == 125
        assert res.err == "carrier: the input device is not a TTY (drop -t, or run from a terminal)\n"
        assert not (carrier.root / "containers").exists() or \
            not any((carrier.root / "containers").iterdir())
