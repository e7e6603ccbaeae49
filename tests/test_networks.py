"""Named networks with the real parts, rootless, for pasta and slirp4netns alike: records and
their CLI, containers that find each other by name over a bridge, isolation, ``--internal``,
host loopback, and the network's supervision group (each member killed in turn).

Traffic goes only to addresses inside namespaces the test made (the network's bridge) and to
servers on loopback; CI runs this inside the sandbox network namespace (scripts/sandbox).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Carrier, user_processes
from helpers import alive, wait_event, wait_pidfd

HELPERS = ["pasta", "slirp4netns"]


@pytest.fixture(params=HELPERS)
def helper(request: pytest.FixtureRequest) -> str:
    """Every test that starts a network runs with each helper."""
    return str(request.param)


@pytest.fixture
def net(carrier: Carrier, image: str, helper: str) -> Iterator[str]:
    """A network named ``n`` on *helper*; afterwards proves its run state is gone."""
    res = carrier("network", "create", "n", "-o", f"helper={helper}")
    assert res.code == 0, res.err
    yield "n"
    d = carrier.root / "networks" / "n"
    supervisor = run_state(carrier, "n")
    if supervisor is not None:  # it ends once its last container has left: wait for that
        wait_pidfd(int(supervisor["supervisor_pid"]))
    assert not (d / "run.json").exists(), "network run state left behind"
    assert not (d / "members.json").exists(), "network membership left behind"


def run_state(carrier: Carrier, name: str) -> dict[str, object] | None:
    """The network's run.json, or None when it is not running."""
    try:
        data = json.loads((carrier.root / "networks" / name / "run.json").read_text())
    except FileNotFoundError:
        return None
    assert isinstance(data, dict)
    return data


def tcp_echo_server(name: str, port: int = 5432) -> list[str]:
    """The arguments of a ``run -d`` whose container answers every TCP connection on *port*
    with its *name*."""
    # -ll keeps one listener open between connections: a `while nc -l` loop has a window with
    # nothing listening, where a client is refused.
    return ["nc", "-ll", "-p", str(port), "-e", "echo", name]


def ask_tcp(carrier: Carrier, net: str, target: str, *extra: str, port: int = 5432) -> tuple[int, str]:
    """Connect from a fresh container on *net* to *target*:*port*; its exit code and answer."""
    res = carrier("run", "--rm", "--network", net, *extra, "busybox", "sh", "-c",
                  f"echo | nc -w 5 {target} {port}")
    return res.code, res.out.strip()


class TestRecords:
    def test_create_ls_inspect_rm(self, carrier: Carrier) -> None:
        """A network is a record with Podman's inspect fields, listed, removable; no process."""
        assert carrier("network", "create", "a", "--label", "k=v").code == 0
        res = carrier("network", "create", "b", "--subnet", "10.99.0.0/24", "--internal")
        assert res.code == 0, res.err
        assert carrier("network", "ls", "-q").out.split() == ["a", "b"]
        (a, b) = json.loads(carrier("network", "inspect", "a", "b").out)
        assert a["name"] == "a"
        assert a["driver"] == "bridge"
        assert a["labels"] == {"k": "v"}
        assert a["subnets"] == [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]
        assert not a["internal"]
        assert len(a["id"]) == 64
        assert a["created"]
        assert b["subnets"] == [{"subnet": "10.99.0.0/24", "gateway": "10.99.0.1"}]
        assert b["internal"]
        res = carrier("network", "create", "c")
        assert json.loads(carrier("network", "inspect", "c").out)[0]["subnets"][0]["subnet"] \
            == "10.89.1.0/24", "the first free 10.89.N.0/24"
        assert carrier("network", "rm", "a").out.split() == ["a"]
        assert carrier("network", "prune").out.split() == ["b", "c"]
        assert carrier("network", "ls", "-q").out == ""

    @pytest.mark.parametrize("args", [
        ["create", "x", "--subnet", "10.89.0.300/24"],
        ["create", "x", "--subnet", "10.89.0.1/24"],
        ["create", "x", "--subnet", "10.89.0.0/16"],  # overlaps "taken"
        ["create", "taken"],
        ["create", "bad/name"],
        ["create", "host"],
        ["create", "x", "-o", "helper=tap"],
        ["inspect", "nope"],
        ["rm", "nope"],
    ])
    def test_bad_input(self, carrier: Carrier, args: list[str]) -> None:
        """Bad input is one line, exit 125, and nothing stored changes."""
        assert carrier("network", "create", "taken").code == 0
        before = sorted(p.name for p in (carrier.root / "networks").iterdir())
        res = carrier("network", *args)
        assert res.code == 125
        assert res.err.startswith("carrier: "), res.err
        assert res.err.count("\n") == 1, res.err
        assert sorted(p.name for p in (carrier.root / "networks").iterdir()) == before
        assert carrier("network", "ls", "-q").out.split() == ["taken"]

    def test_run_on_unknown_network(self, carrier: Carrier, image: str) -> None:
        """A container on a network that does not exist is refused before anything is stored."""
        res = carrier("run", "--rm", "--network", "nope", image, "true")
        assert res.code == 125, res.err
        assert res.err.count("\n") == 1, res.err
        assert "nope" in res.err
        assert carrier("ps", "-a", "-q").out == ""


class TestTalk:
    def test_tcp_by_name_and_alias(self, carrier: Carrier, net: str) -> None:
        """Containers on one network reach each other over TCP by name and by alias."""
        assert carrier("run", "-d", "--name", "db", "--network", net, "--network-alias",
                       "database", "busybox", *tcp_echo_server("db")).code == 0
        assert ask_tcp(carrier, net, "db") == (0, "db")
        assert ask_tcp(carrier, net, "database") == (0, "db")
        assert carrier("rm", "-f", "db").code == 0

    def test_udp_by_name(self, carrier: Carrier, net: str) -> None:
        """Containers on one network reach each other over UDP by name."""
        assert carrier("run", "-d", "--name", "echo", "--network", net, "busybox",
                       "udpecho", "5353").code == 0
        res = carrier("run", "--rm", "--network", net, "busybox", "udpask", "echo", "5353", "ping")
        assert (res.code, res.out.strip()) == (0, "ping"), res.err
        assert carrier("rm", "-f", "echo").code == 0

    def test_names_are_current(self, carrier: Carrier, net: str) -> None:
        """A member that joins later is in the hosts file of one already running, and one
        that left is gone from it."""
        assert carrier("run", "-d", "--name", "a", "--network", net, "busybox", "sleep", "600").code == 0
        assert carrier("run", "-d", "--name", "b", "--network", net, "busybox", "sleep", "600").code == 0
        hosts = carrier("exec", "a", "cat", "/etc/hosts").out
        assert "\tb\n" in hosts, hosts
        assert "\ta\n" in hosts, hosts
        assert carrier("rm", "-f", "b").code == 0
        hosts = carrier("exec", "a", "cat", "/etc/hosts").out
        assert "\tb\n" not in hosts, hosts
        assert "\ta\n" in hosts, hosts
        assert carrier("rm", "-f", "a").code == 0

    def test_hosts_symlink_not_followed(self, carrier: Carrier, net: str, tmp_path: Path) -> None:
        """A member that turns its /etc/hosts into a symlink to a host path does not get that
        host file rewritten when others join."""
        victim = tmp_path / "victim"
        victim.write_text("precious\n")
        assert carrier("run", "-d", "--name", "a", "--network", net, "busybox", "sleep", "600").code == 0
        assert carrier("exec", "a", "ln", "-sf", str(victim), "/etc/hosts").code == 0
        assert carrier("run", "--rm", "--network", net, "busybox", "true").code == 0
        assert victim.read_text() == "precious\n"
        assert carrier("rm", "-f", "a").code == 0

    def test_networks_are_isolated(self, carrier: Carrier, net: str, helper: str) -> None:
        """A container on another network reaches neither the name nor the address."""
        assert carrier("network", "create", "other", "-o", f"helper={helper}").code == 0
        assert carrier("run", "-d", "--name", "db", "--network", net, "busybox",
                       *tcp_echo_server("db")).code == 0
        address = str(carrier.record("db")["network"]["address"]).split("/")[0]  # type: ignore[index]
        assert ask_tcp(carrier, net, address) == (0, "db")
        code, out = ask_tcp(carrier, "other", "db")
        assert code != 0
        assert out == ""
        code, out = ask_tcp(carrier, "other", address)
        assert code != 0
        assert out == ""
        assert carrier("rm", "-f", "db").code == 0
        other = run_state(carrier, "other")
        if other is not None:
            wait_pidfd(int(other["supervisor_pid"]))


@pytest.fixture
def host_server() -> Iterator[int]:
    """An HTTP server on host 127.0.0.1 answering ``host``; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"host")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def ask_host(carrier: Carrier, net: str, target: str, port: int, *extra: str) -> str:
    """Fetch from the host's server at *target*:*port* in a fresh container on *net*; the body,
    or ``failed``. (An HTTP client: busybox nc half-closes, which pasta mishandles towards the
    host, see docs/networking.md.)"""
    res = carrier("run", "--rm", "--network", net, *extra, "busybox", "sh", "-c",
                  f"timeout 5 wget -q -O - http://{target}:{port}/ || echo failed")
    return res.out.strip()


class TestWayOut:
    def test_host_loopback_only_when_asked(self, carrier: Carrier, net: str, host_server: int) -> None:
        """The host's loopback is reachable from a network's container with --host-loopback
        and not without it."""
        assert ask_host(carrier, net, "host.containers.internal", host_server,
                        "--host-loopback") == "host"
        res = carrier("run", "--rm", "--network", net, "--host-loopback", "busybox", "cat",
                      "/etc/hosts")
        address = next(ln.split()[0] for ln in res.out.splitlines() if "host.containers.internal" in ln)
        assert ask_host(carrier, net, address, host_server) == "failed"

    def test_internal_has_no_way_out(self, carrier: Carrier, image: str, helper: str,
                                     host_server: int) -> None:
        """An --internal network reaches neither the host nor the outside, and has no helper;
        its members still talk to each other."""
        assert carrier("network", "create", "n", "-o", f"helper={helper}").code == 0
        assert carrier("network", "create", "i", "--internal").code == 0
        res = carrier("run", "--rm", "--network", "n", "--host-loopback", "busybox", "cat",
                      "/etc/hosts")
        address = next(ln.split()[0] for ln in res.out.splitlines() if "host.containers.internal" in ln)
        assert ask_host(carrier, "n", address, host_server, "--host-loopback") == "host"
        assert ask_host(carrier, "i", address, host_server, "--host-loopback") == "failed"
        assert carrier("run", "-d", "--name", "db", "--network", "i", "busybox",
                       *tcp_echo_server("db")).code == 0
        state = run_state(carrier, "i")
        assert state is not None
        assert state["helper_pid"] is None
        res = carrier("exec", "db", "ip", "route")
        assert res.out.startswith("default via 10.89.1.1"), res.out
        assert ask_tcp(carrier, "i", "db") == (0, "db")
        assert carrier("exec", "db", "cat", "/etc/resolv.conf").out.strip() == ""
        assert carrier("rm", "-f", "db").code == 0
        for name in ("n", "i"):
            state = run_state(carrier, name)
            if state is not None:
                wait_pidfd(int(state["supervisor_pid"]))
            assert run_state(carrier, name) is None


class TestFates:
    @pytest.mark.parametrize("member", ["holder_pid", "helper_pid", "supervisor_pid"])
    def test_member_killed_ends_attached(self, carrier: Carrier, net: str, member: str) -> None:
        """SIGKILL to any member of the network's group ends every attached container's group
        with reason network-exited, and leaves no process, veth or run state behind."""
        for name in ("a", "b"):
            assert carrier("run", "-d", "--name", name, "--network", net, "busybox", "sleep",
                           "600").code == 0
        state = run_state(carrier, net)
        assert state is not None
        pids = {k: int(state[k]) for k in ("holder_pid", "helper_pid", "supervisor_pid")}  # type: ignore[call-overload]
        os.kill(pids[member], signal.SIGKILL)
        res = carrier("wait", "a", "b")
        assert res.out.split() == ["125", "125"], res
        for name in ("a", "b"):
            assert str(carrier.record(name)["reason"]).startswith("network-exited"), \
                carrier.record(name)["reason"]
        for pid in pids.values():
            wait_pidfd(pid)
            assert not alive(pid)
        carrier("network", "ls")  # reconciles a killed supervisor's run state
        assert run_state(carrier, net) is None
        assert carrier("rm", "a", "b").code == 0

    def test_restart_policy_acts(self, carrier: Carrier, net: str) -> None:
        """A container whose network ended is restarted by its policy, on a new network group."""
        assert carrier("run", "-d", "--name", "a", "--restart", "always", "--network", net,
                       "busybox", "sleep", "600").code == 0
        first = run_state(carrier, net)
        assert first is not None
        os.kill(int(first["holder_pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        wait_event(carrier, "started", 2)
        second = run_state(carrier, net)
        assert second is not None
        assert second["holder_pid"] != first["holder_pid"]
        assert carrier("exec", "a", "ip", "route").out.startswith("default via 10.89.0.1")
        assert carrier("rm", "-f", "a").code == 0


class TestRemove:
    def test_rm_refused_while_used(self, carrier: Carrier, net: str) -> None:
        """A network a container uses is not removed (one line, 125); -f removes the container
        too."""
        assert carrier("run", "-d", "--name", "a", "--network", net, "busybox", "sleep",
                       "600").code == 0
        res = carrier("network", "rm", net)
        assert res.code == 125, res.err
        assert res.err.count("\n") == 1, res.err
        assert "a" in res.err, res.err
        assert carrier("network", "ls", "-q").out.split() == [net]
        assert carrier("network", "rm", "-f", net).code == 0
        assert carrier("ps", "-a", "-q").out == ""
        assert carrier("network", "ls", "-q").out == ""


class TestPublish:
    def test_same_port_on_two_networks(self, carrier: Carrier, net: str, helper: str) -> None:
        """-p on networked containers publishes through the network: the same container port
        of containers on two networks, each on its host port, over TCP."""
        assert carrier("network", "create", "other", "-o", f"helper={helper}").code == 0
        ports = {}
        for name, network in (("a", net), ("b", "other")):
            ports[name] = free_port()
            assert carrier("run", "-d", "--name", name, "--network", network, "-p",
                           f"127.0.0.1:{ports[name]}:5432", "busybox",
                           *tcp_echo_server(name)).code == 0
        for name, port in ports.items():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                assert conn.makefile("rb").readline() == f"{name}\n".encode()
        assert carrier("rm", "-f", "a", "b").code == 0
        other = run_state(carrier, "other")
        if other is not None:
            wait_pidfd(int(other["supervisor_pid"]))


class TestJoinContainer:
    @pytest.mark.parametrize("owner_net", ["helper", "named"])
    def test_sidecar_shares_and_ends_with_owner(self, carrier: Carrier, net: str, helper: str,
                                               owner_net: str) -> None:
        """--network container:NAME shares the owner's network (its loopback and its files),
        and the joiner's group ends with network-exited when the owner goes."""
        network = helper if owner_net == "helper" else net
        assert carrier("run", "-d", "--name", "owner", "--network", network, "busybox",
                       *tcp_echo_server("owner")).code == 0
        res = carrier("run", "--rm", "--network", "container:owner", "busybox", "sh", "-c",
                      "echo | nc -w 5 127.0.0.1 5432; ip -o -4 addr show scope global")
        assert res.out.startswith("owner\n"), res
        address = str(carrier.record("owner")["network"]["address"])  # type: ignore[index]
        assert address in res.out
        assert carrier("run", "-d", "--name", "side", "--network", "container:owner", "busybox",
                       "sleep", "600").code == 0
        assert carrier("exec", "side", "cat", "/etc/resolv.conf").out == \
            carrier("exec", "owner", "cat", "/etc/resolv.conf").out
        assert carrier("rm", "-f", "owner").code == 0
        assert carrier("wait", "side").out.split() == ["125"]
        assert str(carrier.record("side")["reason"]).startswith("network-exited")
        assert carrier("rm", "side").code == 0

    @pytest.mark.parametrize("args", [
        ["--network", "container:"],
        ["--network", "container:owner", "-p", "8080:80"],
        ["--network", "container:owner", "--dns", "192.0.2.9"],
        ["--network", "container:nope"],
    ])
    def test_bad_input(self, carrier: Carrier, image: str, args: list[str]) -> None:
        """A bad container: join is one line and exit 125, and nothing is left running."""
        res = carrier("run", "--rm", *args, "busybox", "true")
        assert res.code == 125, res
        assert res.err.count("\n") == 1, res.err
        assert carrier("ps", "-q").out == ""


def test_tree_finds_services_by_name(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """`carrier up` puts a tree on its own network, where services reach each other by their
    names in the file; down leaves no network running."""
    path = tmp_path / "shop.toml"
    path.write_text(
        'name = "shop"\n'
        '[containers.db]\nimage = "busybox"\nstop_timeout = 1\n'
        'command = ["nc", "-ll", "-p", "5432", "-e", "echo", "db-here"]\n'
        '[containers.web]\nimage = "busybox"\nstop_timeout = 1\n'
        'command = ["sh", "-c", "echo | nc -w 5 db 5432; exec sleep 600"]\n'
        'depends_on = { db = "started" }\n'
    )
    assert carrier("up", "-d", str(path)).code == 0
    wait_event(carrier, "started", 2)
    res = carrier("exec", "shop-web", "sh", "-c", "echo | nc -w 5 db 5432")
    assert res.out.strip() == "db-here", res
    assert json.loads(carrier("network", "inspect", "shop_default").out)[0]["name"] == "shop_default"
    state = run_state(carrier, "shop_default")
    assert state is not None
    assert carrier("down", str(path)).code == 0
    wait_pidfd(int(state["supervisor_pid"]))  # type: ignore[call-overload]
    assert run_state(carrier, "shop_default") is None
    assert carrier("rm", "shop-web", "shop-db").code == 0


def free_port() -> int:
    """A port on host 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_concurrent_first_joins(carrier: Carrier, net: str) -> None:
    """Containers joining an idle network at the same moment start exactly one network group."""
    procs = [carrier.popen("run", "-d", "--name", f"c{i}", "--network", net, "busybox", "sleep",
                           "600", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for i in range(6)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    root = str(carrier.root)
    groups = [pid for pid, cmd in user_processes().items()
              if "carrier._supervision._netgroup" in cmd and root in cmd]
    assert len(groups) == 1, groups
    state = run_state(carrier, net)
    assert state is not None
    assert state["supervisor_pid"] == groups[0]
    assert carrier("rm", "-f", *[f"c{i}" for i in range(6)]).code == 0


def test_thirty_containers(carrier: Carrier, net: str) -> None:
    """Thirty detached containers on one network all resolve and reach one name."""
    assert carrier("run", "-d", "--name", "db", "--network", net, "busybox",
                   *tcp_echo_server("db")).code == 0
    names = [f"c{i}" for i in range(30)]
    for name in names:
        assert carrier("run", "-d", "--name", name, "--network", net, "busybox", "sleep",
                       "600").code == 0
    addresses = {str(carrier.record(n)["network"]["address"]) for n in names}  # type: ignore[index]
    assert len(addresses) == 30
    for name in names:
        res = carrier("exec", name, "sh", "-c", "echo | nc -w 5 db 5432")
        assert res.out.strip() == "db", (name, res)
    assert carrier("rm", "-f", "db", *names).code == 0
