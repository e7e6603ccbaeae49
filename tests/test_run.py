"""``carrier run`` end to end: real namespaces, real runc, rootless."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from conftest import Carrier
from helpers import container_pid, wait_pidfd, wait_unsupervised


class TestForeground:
    def test_streams_and_exit_code(self, carrier: Carrier, image: str) -> None:
        """Both output streams reach us and the container's exit code is ours."""
        res = carrier("run", "--rm", image, "sh", "-c", "echo out; echo err >&2; exit 7")
        assert (res.code, res.out, res.err) == (7, "out\n", "err\n")

    def test_missing_command_is_127(self, carrier: Carrier, image: str) -> None:
        """A command that does not exist exits 127, as in Docker."""
        res = carrier("run", "--rm", image, "no-such-command")
        assert res.code == 127
        assert "no-such-command" in res.err

    def test_not_executable_is_126(self, carrier: Carrier, image: str) -> None:
        """A command that cannot be executed exits 126."""
        res = carrier("run", "--rm", image, "/etc/passwd")
        assert res.code == 126, res.err

    def test_rm_removes_everything(self, carrier: Carrier, image: str) -> None:
        """With --rm, neither the record nor the name remains."""
        assert carrier("run", "--rm", "--name", "gone", image, "true").code == 0
        assert not any((carrier.root / "containers").iterdir())
        assert carrier("info", "gone").code == 125

    def test_kept_without_rm(self, carrier: Carrier, image: str) -> None:
        """Without --rm the exited container is listed with its code and can be removed."""
        assert carrier("run", "--name", "kept", image, "sh", "-c", "exit 3").code == 3
        rec = carrier.record("kept")
        assert (rec["status"], rec["exit_code"], rec["reason"]) == ("exited", 3, "exited")
        assert "Exited (3)" in carrier("ps", "-a").out
        assert carrier("rm", "kept").code == 0
        assert carrier("ps", "-a", "--format", "json").out.strip() == "[]"

    def test_signal_exit_is_128_plus_n(self, carrier: Carrier, image: str) -> None:
        """A container killed by signal N reports 128+N (SIGKILL: 137)."""
        proc = carrier.popen("run", "--name", "fg", image, "sh", "-c", "echo ready; sleep 100",
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        os.kill(container_pid(carrier, "fg"), signal.SIGKILL)
        assert proc.wait(timeout=30) == 137
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]
        carrier("rm", "fg")

    def test_sigint_is_forwarded(self, carrier: Carrier, image: str) -> None:
        """Ctrl-C (SIGINT) to a foreground run goes to the container once."""
        script = 'trap "echo got-int; exit 9" INT; echo ready; while :; do sleep 0.1; done'
        proc = carrier.popen("run", "--rm", image, "sh", "-c", script,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 9
        assert proc.stdout.read() == "got-int\n"
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]

    def test_second_sigint_kills(self, carrier: Carrier, image: str) -> None:
        """A second Ctrl-C forces a kill of a container that ignores the first."""
        script = 'trap "echo got-int" INT; echo ready; while :; do sleep 0.1; done'
        proc = carrier.popen("run", "--rm", image, "sh", "-c", script,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == "got-int\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 137
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]

    def test_env_workdir_user(self, carrier: Carrier, image: str) -> None:
        """-e, -w and -u reach the process."""
        res = carrier("run", "--rm", "-e", "GREETING=hi there", "-w", "/tmp", "-u", "65534",
                      image, "sh", "-c", 'echo "$GREETING"; pwd; id -u')
        assert res.out.split("\n")[:3] == ["hi there", "/tmp", "65534"], res.err

    def test_command_options_are_the_commands(self, carrier: Carrier, image: str) -> None:
        """Options after the image belong to the command, even ones carrier also knows."""
        res = carrier("run", "--rm", image, "sh", "-c", 'printf "%s," "$@"', "x", "-e", "--rm", "-d")
        assert res.out == "-e,--rm,-d,", res.err


class TestIsolation:
    def test_pid_hostname_and_user_namespaces(self, carrier: Carrier, image: str) -> None:
        """The command is PID 1 of its own namespace, has its own hostname, and is root inside
        while mapped to the invoking user outside."""
        res = carrier("run", "--rm", "--name", "iso", image, "sh", "-c",
                      "echo $$; hostname; id -u; cat /proc/self/uid_map")
        lines = res.out.splitlines()
        assert lines[:3] == ["1", "iso", "0"], res.err
        first_map = lines[3].split()
        assert first_map[:3] == ["0", str(os.getuid()), "1"]

    def test_network_is_loopback_only(self, carrier: Carrier, image: str) -> None:
        """Without a network helper the namespace has only lo, and it is up."""
        res = carrier("run", "--rm", "--no-network", image, "sh", "-c",
                      "ls /sys/class/net; cat /sys/class/net/lo/operstate")
        assert res.out.split() == ["lo", "unknown"], res.err

    def test_host_side_uid_is_ours(self, carrier: Carrier, image: str) -> None:
        """Seen from the host, the container's root is the invoking user."""
        assert carrier("run", "-d", "--name", "seen", image, "sleep", "100").code == 0
        pid = container_pid(carrier, "seen")
        assert os.stat(f"/proc/{pid}").st_uid == os.getuid()
        assert carrier("rm", "-f", "seen").code == 0

    def test_writes_stay_in_the_container(self, carrier: Carrier, image: str) -> None:
        """A container's writes do not reach the image or another container."""
        assert carrier("run", "--name", "a", image, "sh", "-c", "echo x > /marker").code == 0
        res = carrier("run", "--rm", image, "sh", "-c", "test -e /marker && echo present || echo absent")
        assert res.out == "absent\n"
        assert carrier("rm", "a").code == 0


class TestDetached:
    def test_lifecycle(self, carrier: Carrier, image: str) -> None:
        """run -d, ps, stop -t, ps -a, logs, rm: the Docker lifecycle, with nothing left over."""
        # A PID 1 that handles SIGTERM and goes on: the stop waits its grace, then kills.
        script = 'trap "echo got-term" TERM; echo hello; while :; do sleep 0.1; done'
        res = carrier("run", "-d", "--name", "web", image, "sh", "-c", script)
        assert res.code == 0, res.err
        cid = res.out.strip()
        assert len(cid) == 64
        assert "web" in carrier("ps").out
        started = time.monotonic()
        assert carrier("stop", "-t", "2", "web").code == 0
        elapsed = time.monotonic() - started
        # The 2 s grace, not the default 10 s (a PID 1 without a handler would not be waited
        # for at all: test_stop_kills_an_init_without_a_handler_at_once).
        assert 2 <= elapsed < 10
        assert "web" not in carrier("ps").out
        assert "Exited (137)" in carrier("ps", "-a").out
        assert carrier.record("web")["reason"] == "stop-requested"
        assert carrier("logs", "web").out == "hello\ngot-term\n"
        assert carrier("rm", "web").code == 0
        assert not (carrier.root / "containers" / cid).exists()

    def test_sigterm_ignored_then_killed(self, carrier: Carrier, image: str) -> None:
        """A container that traps SIGTERM is SIGKILLed after the timeout and reports 137."""
        script = 'trap "echo got-term" TERM; echo ready; while :; do sleep 0.1; done'
        assert carrier("run", "-d", "--name", "stubborn", image, "sh", "-c", script).code == 0
        assert carrier("stop", "-t", "1", "stubborn").code == 0
        assert carrier.record("stubborn")["exit_code"] == 137
        assert "got-term" in carrier("logs", "stubborn").out
        carrier("rm", "stubborn")

    def test_stop_kills_an_init_without_a_handler_at_once(self, carrier: Carrier,
                                                          image: str) -> None:
        """busybox sleep as PID 1 has no SIGTERM handler, so the kernel discards the stop's
        SIGTERM: the stop kills it at once (137, as after the timeout) instead of waiting out
        --stop-timeout (ten minutes here, past this call's own timeout)."""
        assert carrier("run", "-d", "--name", "deaf", "--stop-timeout", "10m", image,
                       "sleep", "1000").code == 0
        res = carrier("stop", "deaf")
        assert res.code == 0, res.err
        record = carrier.record("deaf")
        assert (record["exit_code"], record["reason"]) == (137, "stop-requested")
        carrier("rm", "deaf")

    def test_graceful_stop_keeps_exit_code(self, carrier: Carrier, image: str) -> None:
        """A container that exits on SIGTERM reports its own code, not a kill."""
        script = 'trap "exit 5" TERM; while :; do sleep 0.1; done'
        assert carrier("run", "-d", "--name", "polite", image, "sh", "-c", script).code == 0
        assert carrier("stop", "polite").code == 0
        assert carrier.record("polite")["exit_code"] == 5
        carrier("rm", "polite")

    def test_rm_running_needs_force(self, carrier: Carrier, image: str) -> None:
        """rm refuses a running container; rm -f kills and removes it."""
        assert carrier("run", "-d", "--name", "busy", image, "sleep", "100").code == 0
        res = carrier("rm", "busy")
        assert res.code == 125
        assert "running" in res.err
        assert carrier("rm", "-f", "busy").code == 0
        assert carrier("ps", "-a", "--format", "json").out.strip() == "[]"

    def test_container_killed_from_outside(self, carrier: Carrier, image: str) -> None:
        """kill -9 of the container's process ends its group: 137, supervisor gone, no leftovers."""
        assert carrier("run", "-d", "--name", "victim", image, "sleep", "100").code == 0
        rec = carrier.record("victim")
        os.kill(container_pid(carrier, "victim"), 9)
        wait_unsupervised(rec)
        rec = carrier.record("victim")
        assert (rec["status"], rec["exit_code"]) == ("exited", 137)
        assert rec["reason"] == "killed: killed by SIGKILL"
        carrier("rm", "victim")

    def test_supervisor_killed(self, carrier: Carrier, image: str) -> None:
        """kill -9 of a detached supervisor: the next command reaps the leftovers."""
        assert carrier("run", "-d", "--name", "orphan", image, "sleep", "100").code == 0
        rec = carrier.record("orphan")
        supervisor = int(rec["supervisor_pid"])  # type: ignore[arg-type]
        os.kill(int(rec["supervisor_pid"]), 9)  # type: ignore[arg-type]
        wait_pidfd(supervisor)
        listing = carrier("ps", "-a").out
        assert "Exited (137)" in listing
        assert carrier.record("orphan")["reason"].startswith("supervisor-died")  # type: ignore[union-attr]
        assert not any((carrier.root / "runtime").iterdir())
        carrier("rm", "orphan")

    def test_ids_and_prefixes(self, carrier: Carrier, image: str) -> None:
        """A container is found by name, full id or unique id prefix."""
        cid = carrier("run", "-d", image, "sleep", "100").out.strip()
        assert carrier("info", cid[:5]).code == 0
        assert carrier("info", cid).code == 0
        assert carrier.record(cid[:12])["name"] == cid[:12]
        assert carrier("rm", "-f", cid[:8]).code == 0
