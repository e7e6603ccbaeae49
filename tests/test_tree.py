"""carrier up / down: declared supervision trees, run for real from one process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Carrier
from helpers import container_pid, events, wait_event

SUPERVISORS = Path(__file__).resolve().parent.parent / "supervisors"


def _kinds(carrier: Carrier, name: str) -> list[str]:
    return [str(e["type"]) for e in events(carrier) if e["name"] == name]


class TestExamples:
    def test_web_and_healthy_dependency(self, carrier: Carrier, image: str) -> None:
        """The client starts only after the web server is healthy, fetches from it, and down
        stops both in reverse order with nothing left behind."""
        res = carrier("up", "-d", str(SUPERVISORS / "web.toml"))
        assert res.code == 0, res.err
        starts = [e for e in events(carrier, "started")]
        healthy_at = next(float(e["time"]) for e in events(carrier, "healthy"))  # type: ignore[arg-type]
        client_start = next(float(e["time"]) for e in starts if e["name"] == "webdemo-client")  # type: ignore[arg-type]
        assert healthy_at < client_start
        _wait_for_log(carrier, "webdemo-client", b"hello-from-web")
        assert carrier("down", str(SUPERVISORS / "web.toml")).code == 0
        exits = [e["name"] for e in events(carrier, "exited")]
        assert exits == ["webdemo-client", "webdemo-web"]
        for name in ("webdemo-client", "webdemo-web"):
            carrier("rm", name)

    def test_foreground_sigint_stops_in_reverse(self, carrier: Carrier, image: str) -> None:
        """Ctrl-C (SIGINT) to a foreground `carrier up` stops everything, last started first."""
        proc = carrier.popen("up", str(SUPERVISORS / "pair.toml"), stderr=subprocess.PIPE)
        assert proc.stderr is not None
        assert "pair is up" in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        proc.stderr.close()
        assert [e["name"] for e in events(carrier, "exited")] == ["pair-right", "pair-left"]
        for name in ("pair-left", "pair-right"):
            carrier("rm", name)


class TestStrategies:
    def test_one_for_all_restarts_both(self, carrier: Carrier, image: str) -> None:
        """In one_for_all, killing one member restarts both."""
        assert carrier("up", "-d", str(SUPERVISORS / "pair.toml")).code == 0
        os.kill(container_pid(carrier, "pair-left"), signal.SIGKILL)
        wait_event(carrier, "started", count=4)
        assert _kinds(carrier, "pair-left").count("started") == 2
        assert _kinds(carrier, "pair-right").count("started") == 2
        right_exit = next(e for e in events(carrier, "exited") if e["name"] == "pair-right")
        assert right_exit["reason"] == "restart-requested"
        assert carrier("down", str(SUPERVISORS / "pair.toml")).code == 0
        for name in ("pair-left", "pair-right"):
            carrier("rm", name)

    def test_one_for_one_restarts_only_the_failed(self, carrier: Carrier, image: str,
                                                  tmp_path: Path) -> None:
        """In one_for_one, a member's death touches no sibling."""
        spec = (SUPERVISORS / "pair.toml").read_text().replace("one_for_all", "one_for_one")
        spec = spec.replace('stop_timeout = 1\n', 'stop_timeout = 1\nrestart = "always"\n')
        path = tmp_path / "solo.toml"
        path.write_text(spec.replace('name = "pair"', 'name = "solo"'))
        assert carrier("up", "-d", str(path)).code == 0
        os.kill(container_pid(carrier, "solo-left"), signal.SIGKILL)
        wait_event(carrier, "started", count=3)
        assert _kinds(carrier, "solo-left").count("started") == 2
        assert _kinds(carrier, "solo-right").count("started") == 1
        assert carrier("down", str(path)).code == 0
        for name in ("solo-left", "solo-right"):
            carrier("rm", name)


class TestInvalid:
    @pytest.mark.parametrize(("text", "needle"), [
        ("[containers.a]\ncommand = ['true']\n", "containers.a: 'image' is a required property"),
        ("[containers.a]\nimage = 'busybox'\nports = 8080\n",
         "containers.a.ports: 8080 is not of type 'array'"),
        ("[containers.a]\nimage = 'busybox'\ndepends_on = {b = 'started'}\n",
         "containers.a.depends_on.b: no container 'b'"),
        ("[containers.a]\nimage = 'busybox'\ndepends_on = {a = 'started'}\n", "depends_on loops"),
        ("[containers.a]\nimage = 'nope'\npull = 'never'\n", "containers.a: no such image: nope"),
        ("[containers.a]\nimage = 'busybox'\n[groups.g]\nmembers = ['z']\n",
         "groups.g.members.0: no container 'z'"),
        ("containers = 3 = 4", "invalid TOML"),
    ])
    def test_error_names_file_key_reason(self, carrier: Carrier, image: str, tmp_path: Path,
                                         text: str, needle: str) -> None:
        """An invalid tree gets one line naming the file, the key and the reason; nothing starts."""
        path = tmp_path / "bad.toml"
        path.write_text(text)
        res = carrier("up", str(path))
        assert res.code == 125
        assert res.err.startswith(f"carrier: {path}")
        assert needle in res.err, res.err
        assert len(res.err.strip().splitlines()) == 1
        assert not any((carrier.root / "containers").iterdir())


def _wait_for_log(carrier: Carrier, name: str, needle: bytes, bound: float = 30) -> None:
    """Bounded poll of a container's log (its output announces nothing)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if needle in carrier("logs", name).out.encode():
            return
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} not in the logs of {name} within {bound} s")


class TestStopOne:
    def test_stop_one_member_leaves_the_rest(self, carrier: Carrier, image: str) -> None:
        """carrier stop of one container of a tree stops that one only, through its own
        control socket, and the group does not restart it or its sibling."""
        assert carrier("up", "-d", str(SUPERVISORS / "pair.toml")).code == 0
        assert carrier("stop", "pair-right").code == 0
        assert carrier.record("pair-right")["status"] == "exited"
        assert carrier.record("pair-left")["status"] == "running"
        assert _kinds(carrier, "pair-left").count("started") == 1
        assert carrier("down", str(SUPERVISORS / "pair.toml")).code == 0
        for name in ("pair-left", "pair-right"):
            carrier("rm", name)
