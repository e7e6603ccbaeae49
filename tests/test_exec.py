"""``carrier exec``, ``shell`` and ``terminal``: real runc exec, a real PTY, rootless."""

from __future__ import annotations

import subprocess
import termios
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import Pty, foreground, pid_of
from test_network import BODY, HELPERS, http_server  # noqa: F401 - the fixture is used here


@pytest.fixture
def running(carrier: Carrier, image: str) -> str:
    """A detached container that wrote a file and sleeps; removed afterwards."""
    res = carrier("run", "-d", "--name", "box", "--no-network", image, "sh", "-c",
                  "echo data > /written; exec sleep 1000")
    assert res.code == 0, res.err
    yield "box"
    carrier("rm", "-f", "box")


class TestExec:
    def test_output_exit_code_and_namespaces(self, carrier: Carrier, running: str) -> None:
        """exec streams output, returns the code, and sees the container's PID namespace,
        hostname and files."""
        res = carrier("exec", running, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; "
                      "cat /written; echo err >&2; exit 4")
        assert res.code == 4
        assert res.out.splitlines() == ["sleep 1000 ", "box", "data"]
        assert res.err == "err\n"

    def test_not_found_and_not_executable(self, carrier: Carrier, running: str) -> None:
        """A missing command exits 127, one that cannot be executed 126."""
        assert carrier("exec", running, "no-such-command").code == 127
        assert carrier("exec", running, "/etc/passwd").code == 126

    def test_stdin_env_workdir_user(self, carrier: Carrier, running: str) -> None:
        """-i passes stdin; -e, -w and -u apply."""
        res = carrier("exec", "-i", "-e", "FOO=bar", "-w", "/tmp", "-u", "65534", running, "sh", "-c",
                      'cat; echo "$FOO"; pwd; id -u', stdin="piped\n")
        assert res.out.splitlines() == ["piped", "bar", "/tmp", "65534"], res.err

    def test_errors(self, carrier: Carrier, image: str, running: str) -> None:
        """Not running or not existing: one line, exit 125."""
        res = carrier("exec", "ghost", "true")
        assert (res.code, res.err) == (125, "carrier: no such container: ghost\n")
        assert carrier("run", "--name", "done", "--no-network", image, "true").code == 0
        res = carrier("exec", "done", "true")
        assert (res.code, res.err) == (
            125, "carrier: container done has exited (code 0): exec needs a running container\n")
        carrier("rm", "done")

    def test_many_at_once(self, carrier: Carrier, running: str) -> None:
        """20 concurrent execs all return their own output, and nothing is left behind."""
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda i: carrier("exec", running, "sh", "-c", f"echo n{i}"),
                                    range(20)))
        assert [r.out for r in results] == [f"n{i}\n" for i in range(20)]
        assert not list((carrier.root / "containers").glob("*/exec-*"))

    def test_shell_runs_a_command(self, carrier: Carrier, running: str) -> None:
        """shell (alias sh) runs /bin/sh with stdin, in a login-like environment."""
        res = carrier("sh", running, stdin="echo $HOME $USER $SHELL; exit 6\n")
        assert res.code == 6
        assert res.out == "/root root /bin/sh\n"


class TestTerminal:
    def test_interactive_session(self, carrier: Carrier, running: str) -> None:
        """A real PTY: prompt, commands, window size, Ctrl-C, exit code, settings restored."""
        term = Pty(carrier, "terminal", running)
        term.resize(24, 80)
        term.expect(b"# ")
        term.type(b"echo hi-$((1+2))\r")
        term.expect(b"hi-3")
        term.resize(33, 101)
        term.type(b"stty size\r")
        term.expect(b"33 101")
        term.type(b"echo $TERM $HOME $USER\r")
        term.expect(b"vt100 /root root")
        term.type(b"sleep 100\r")
        foreground(pid_of(b"sleep\x00100\x00"))  # Ctrl-C must interrupt a running sleep
        term.type(b"\x03")
        term.type(b"echo after-$?\r")
        term.expect(b"after-130")
        assert termios.tcgetattr(term.slave) != term.settings, "raw mode during the session"
        term.type(b"exit 3\r")
        assert term.proc.wait(timeout=30) == 3
        assert termios.tcgetattr(term.slave) == term.settings, "settings restored"
        term.close()

    def test_ctrl_d_ends_the_session(self, carrier: Carrier, running: str) -> None:
        """Ctrl-D at the prompt reaches the shell inside, which exits 0 (alias t)."""
        term = Pty(carrier, "t", running)
        term.expect(b"# ")
        term.type(b"\x04")
        assert term.close() == 0


class TestNetworkRepair:
    @pytest.mark.parametrize("helper", HELPERS)
    def test_lost_configuration_is_restored(self, carrier: Carrier, image: str, helper: str,
                                            http_server: int) -> None:  # noqa: F811
        """Interface down, default route gone, resolv.conf removed: exec repairs all three,
        says so, and the command then reaches a host-loopback server."""
        assert carrier("run", "-d", "--name", "net", "--network", helper, "--host-loopback",
                       image, "sleep", "1000").code == 0
        rec = carrier.record("net")
        ifname = rec["network"]["interface"]  # type: ignore[index]
        holder = str(rec["holder_pid"])
        assert carrier("exec", "net", "rm", "/etc/resolv.conf").code == 0
        # Taking the link down needs CAP_NET_ADMIN, which the container does not have: do it
        # as the namespace's owner, from outside, the way a privileged process inside would.
        subprocess.run(["nsenter", "-t", holder, "-U", "-n", "ip", "link", "set", ifname, "down"],
                       check=True)
        res = carrier("exec", "net", "sh", "-c",
                      f"ip route; cat /etc/resolv.conf; wget -q -O - "
                      f"http://host.containers.internal:{http_server}/")
        assert res.code == 0, res.err
        assert "repaired the network of net" in res.err
        assert f"{ifname} up" in res.err
        assert "default route via" in res.err
        assert "/etc/resolv.conf" in res.err
        assert res.out.startswith("default via ")
        assert "nameserver" in res.out
        assert res.out.endswith(BODY.decode())
        second = carrier("exec", "net", "true")
        assert second.err == "", "nothing to repair the second time"
        assert carrier("rm", "-f", "net").code == 0

    def test_repair_never_writes_through_a_symlinked_etc(self, carrier: Carrier, image: str,
                                                          tmp_path: Path) -> None:
        """A container that turns its /etc into a symlink naming a host directory: the repair
        (done from the host, through /proc/PID/root) writes nothing there."""
        host_dir = tmp_path / "host-etc"
        host_dir.mkdir()
        assert carrier("run", "-d", "--name", "sly", image, "sleep", "1000").code == 0
        res = carrier("exec", "sly", "sh", "-c", f"rm -rf /etc && ln -s {host_dir} /etc")
        assert res.code == 0, res.err
        res = carrier("exec", "sly", "true")
        assert res.code == 0, res.err
        assert list(host_dir.iterdir()) == []
        assert carrier("rm", "-f", "sly").code == 0

    def test_no_network_left_alone(self, carrier: Carrier, running: str) -> None:
        """A --no-network container is not checked or repaired."""
        assert carrier("exec", running, "rm", "/etc/resolv.conf").code == 0
        res = carrier("exec", running, "ls", "/etc/resolv.conf")
        assert res.code != 0
        assert "repaired" not in res.err

