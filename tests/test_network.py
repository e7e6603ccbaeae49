"""Container networking with the real helpers, rootless, for pasta and slirp4netns alike.

Traffic goes only to servers this test starts on loopback (reached through the helper's host
mapping or a published port). CI runs this inside a private network namespace whose only
uplink leads nowhere (scripts/test), so nothing can leave the machine even by mistake.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import alive, container_pid, helper_pid, wait_pidfd, wait_unsupervised

HELPERS = ["pasta", "slirp4netns"]
BODY = b"carrier-body"


@pytest.fixture(params=HELPERS)
def helper(request: pytest.FixtureRequest) -> str:
    """Every network test runs with each helper."""
    return str(request.param)


@pytest.fixture
def http_server() -> Iterator[int]:
    """An HTTP server on host 127.0.0.1 answering BODY; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestReadiness:
    def test_first_command_sees_the_network(self, carrier: Carrier, image: str, helper: str) -> None:
        """The command's very first act already sees the interface, address and default route."""
        res = carrier("run", "--rm", "--network", helper, image, "ip", "route")
        assert res.code == 0, res.err
        assert res.out.startswith("default via "), res.out
        gateway = res.out.split()[2]
        info_gw = {"pasta": None, "slirp4netns": "10.0.2.2"}[helper]
        if info_gw:
            assert gateway == info_gw

    def test_info_shows_the_network(self, carrier: Carrier, image: str, helper: str) -> None:
        """carrier info reports helper, PID, address, gateway, ports and DNS."""
        port = free_port()
        assert carrier("run", "-d", "--name", "n", "--network", helper, "-p",
                       f"127.0.0.1:{port}:80", image, "sleep", "100").code == 0
        net = carrier.record("n")["network"]
        assert isinstance(net, dict)
        assert net["mode"] == helper
        assert alive(net["helper_pid"])
        assert "/" in net["address"]
        assert net["gateway"]
        assert net["ports"] == [f"127.0.0.1:{port}->80/tcp"]
        assert net["dns"]["nameservers"]
        assert carrier("rm", "-f", "n").code == 0


    @pytest.mark.parametrize("mtu", [1500, None])
    def test_mtu(self, carrier: Carrier, image: str, helper: str, mtu: int | None) -> None:
        """--mtu sets the interface's MTU (the helpers' default is 65520)."""
        flags = ["--mtu", str(mtu)] if mtu else []
        res = carrier("run", "--rm", "--network", helper, *flags, image, "sh", "-c",
                      "for i in /sys/class/net/*; do [ $i = /sys/class/net/lo ] || cat $i/mtu; done")
        assert (res.code, res.out) == (0, f"{mtu or 65520}\n"), res.err

    def test_mtu_out_of_range(self, carrier: Carrier, image: str, helper: str) -> None:
        """An MTU the helpers cannot use is refused before anything starts."""
        res = carrier("run", "--rm", "--network", helper, "--mtu", "100", image, "true")
        assert res.code == 125
        assert "invalid --mtu 100" in res.err


class TestHostLoopback:
    def test_reached_with_flag(self, carrier: Carrier, image: str, helper: str, http_server: int) -> None:
        """With --host-loopback, host.containers.internal reaches a server on host 127.0.0.1."""
        res = carrier("run", "--rm", "--network", helper, "--host-loopback", image, "sh", "-c",
                      f"wget -q -O - http://host.containers.internal:{http_server}/")
        assert res.out.encode() == BODY, res.err

    def test_refused_without_flag(self, carrier: Carrier, image: str, helper: str, http_server: int) -> None:
        """Without the flag the same connection fails, and no host alias is written."""
        gateway = {"pasta": "$(ip route | awk '/default/ {print $3}')", "slirp4netns": "10.0.2.2"}[helper]
        res = carrier("run", "--rm", "--network", helper, image, "sh", "-c",
                      f"grep -c host.containers.internal /etc/hosts; "
                      f"timeout 3 wget -q -O - http://{gateway}:{http_server}/; echo rc=$?")
        lines = res.out.split()
        assert lines[0] == "0"
        assert BODY.decode() not in res.out
        assert lines[-1] != "rc=0"


class TestHosts:
    def test_entries(self, carrier: Carrier, image: str, helper: str) -> None:
        """/etc/hosts has localhost, --add-host entries, the host alias and ourselves."""
        res = carrier("run", "--rm", "--name", "me", "--network", helper, "--host-loopback",
                      "--add-host", "db.test:192.0.2.77", image, "sh", "-c",
                      "cat /etc/hosts; hostname -i 2>/dev/null; ip -o -4 addr show scope global")
        lines = res.out.splitlines()
        assert lines[:2] == ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        assert "192.0.2.77\tdb.test" in lines
        assert any(ln.endswith("host.containers.internal host.docker.internal") for ln in lines)
        own = next(ln for ln in lines if ln.endswith("\tme"))
        assert own.split("\t")[0] in res.out.split("inet ", 1)[1]


class TestModes:
    def test_no_network_is_loopback_only(self, carrier: Carrier, image: str) -> None:
        """--no-network: lo only, up, and no helper."""
        res = carrier("run", "--rm", "--no-network", image, "sh", "-c",
                      "ls /sys/class/net; cat /sys/class/net/lo/operstate; ip route")
        assert res.out.split() == ["lo", "unknown"], res.err

    def test_elevated_needs_root(self, carrier: Carrier, image: str) -> None:
        """--elevated as an ordinary user fails with a clear message."""
        res = carrier("run", "--rm", "--elevated", image, "true")
        assert res.code == 125
        assert "needs root" in res.err

    def test_unknown_mode(self, carrier: Carrier, image: str) -> None:
        """An unknown --network mode is refused."""
        res = carrier("run", "--rm", "--network", "bridge", image, "true")
        assert res.code == 125
        assert "invalid network mode" in res.err

    def test_doctor(self, carrier: Carrier) -> None:
        """carrier network check passes here and names both helpers."""
        res = carrier("network", "check")
        assert res.code == 0, res.out
        assert "pasta" in res.out
        assert "slirp4netns version" in res.out


class TestHelperLifecycle:
    @pytest.mark.parametrize("ending", ["exit", "stop", "container-kill", "helper-kill",
                                        "supervisor-kill"])
    def test_no_helper_outlives_its_container(self, carrier: Carrier, image: str, helper: str,
                                              ending: str) -> None:
        """network.pid names a live helper while the container runs; however the container
        ends, the helper is gone and so is the file."""
        script = "echo up; read line" if ending == "exit" else "exec sleep 100"
        proc = None
        if ending == "exit":
            proc = carrier.popen("run", "--name", "c", "--network", helper, "-i", image, "sh", "-c",
                                 script, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert proc.stdout is not None
            assert proc.stdout.readline() == "up\n"
        else:
            assert carrier("run", "-d", "--name", "c", "--network", helper, image, "sh", "-c",
                           script).code == 0
        rec = carrier.record("c")
        pid = helper_pid(carrier, "c")
        pid_file = Path(str(rec["Dir"])) / "network.pid"
        assert alive(pid)
        expected = {"exit": (0, "exited"), "stop": (137, "stop-requested"),
                    "container-kill": (137, "killed"), "helper-kill": (125, "helper-exited"),
                    "supervisor-kill": (137, "supervisor-died")}[ending]
        if ending == "exit":
            assert proc is not None
            proc.communicate("bye\n", timeout=30)
        elif ending == "stop":
            assert carrier("stop", "-t", "1", "c").code == 0
        else:
            supervisor = int(rec["supervisor_pid"])  # type: ignore[arg-type]
            target = {"helper-kill": pid, "supervisor-kill": supervisor,
                      "container-kill": container_pid(carrier, "c")}[ending]
            os.kill(target, signal.SIGKILL)
            wait_unsupervised(rec)
            carrier("ps", "-a")  # the next command reconciles what a dead supervisor left
        wait_pidfd(pid)
        assert not alive(pid)
        assert not pid_file.exists()
        rec = carrier.record("c")
        assert (rec["exit_code"], str(rec["reason"]).split(":")[0]) == expected
        assert carrier("rm", "c").code == 0


class TestFailedStart:
    def test_mount_fails_while_the_helper_starts(self, carrier: Carrier, image: str, helper: str,
                                                 tmp_path: Path) -> None:
        """A root filesystem that cannot be mounted while the helper starts beside it fails the
        start in one line with 125, and the helper is stopped (the fixture finds nothing left)."""
        tools = tmp_path / "bin"
        tools.mkdir()
        # nsenter runs it from PATH in the holder's mount namespace; the storage probe's mount
        # (onto "merged") still works.
        mount = tools / "mount"
        real = shutil.which("mount")
        mount.write_text(f'#!/bin/sh\ncase "$*" in *rootfs) echo "mount: refused by the test" >&2; '
                         f'exit 32;; esac\nexec {real} "$@"\n')
        mount.chmod(0o755)
        carrier.env["PATH"] = f"{tools}:{carrier.env['PATH']}"
        res = carrier("run", "--rm", "--name", "c", "--network", helper, "--storage-driver",
                      "overlay", image, "true")
        assert res.code == 125, res.err
        lines = res.err.strip().splitlines()
        assert len(lines) == 1, res.err
        assert "cannot mount the container's overlay" in lines[0], res.err
        assert carrier("ps", "-a", "-q").out.strip() == ""
