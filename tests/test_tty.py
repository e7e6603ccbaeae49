"""``run -t`` and ``run -it``: a real pseudo-terminal for the container, driven through a real
terminal (a pty) like a person at a keyboard (issue #13, interactive runs)."""

from __future__ import annotations

import termios

from conftest import Carrier
from helpers import Pty, foreground, pid_of


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
        term.expect(b"\x1b[J")  # the shell inside redraws its line: it got the new size
        term.type(b"stty size\r")
        term.expect(b"33 101")
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

    def test_tty_needs_a_terminal_and_the_foreground(self, carrier: Carrier, image: str) -> None:
        """``-t`` without a terminal on standard input, or with ``-d``, is one line and 125
        (not supported yet), and nothing is created."""
        for args in (["-t"], ["-d", "-t"]):
            res = carrier("run", *args, "--rm", image, "true")
            assert res.code == 125
            assert len(res.err.splitlines()) == 1, res.err
            assert "-t" in res.err
        assert not (carrier.root / "containers").exists() or \
            not any((carrier.root / "containers").iterdir())

    def test_it_needs_a_terminal(self, carrier: Carrier, image: str) -> None:
        """``run -it`` with no terminal on standard input is refused in one line, 125, as
        Docker refuses it, and nothing is created."""
        res = carrier("run", "-it", "--rm", image, "sh")
        assert res.code == 125
        assert res.err == "carrier: the input device is not a TTY (drop -t, or run from a terminal)\n"
        assert not (carrier.root / "containers").exists() or \
            not any((carrier.root / "containers").iterdir())
