"""create, start [-a], restart and rename, as Podman users type them, run rootless against real
containers (the one supervisor that run uses)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Carrier


def ps_all(carrier: Carrier) -> dict[str, str]:
    """Every container's name and STATUS, from ``ps -a --format json``."""
    res = carrier("ps", "-a", "--format", "json")
    assert res.code == 0, res.err
    return {c["Names"][0]: c["Status"] for c in json.loads(res.out)}


def stored(root: Path) -> list[str]:
    """What the Carrier root holds for containers: their directories and names."""
    return sorted(p.name for d in ("containers", "names") if (root / d).exists()
                  for p in (root / d).iterdir())


class TestCreateStart:
    def test_create_then_start(self, carrier: Carrier, image: str) -> None:
        """create stores a container that does not run (ps -a: Created, across later commands);
        start runs it detached, and starts it again once it has exited."""
        res = carrier("create", "--name", "c", image, "sleep", "1000")
        assert res.code == 0, res.err
        assert len(res.out.strip()) == 64
        assert ps_all(carrier) == {"c": "Created"}
        assert carrier.record("c")["status"] == "created"
        assert carrier("ps", "-q").out == ""  # nothing runs
        res = carrier("start", "c")
        assert (res.code, res.out) == (0, "c\n"), res.err
        record = carrier.record("c")
        assert record["status"] == "running"
        assert carrier("exec", "c", "cat", "/proc/1/cmdline").out == "sleep\x001000\x00"
        assert carrier("stop", "-t", "0", "c").code == 0
        assert carrier.record("c")["status"] == "exited"
        res = carrier("start", "c")
        assert (res.code, res.out) == (0, "c\n"), res.err
        again = carrier.record("c")
        assert again["status"] == "running"
        assert again["started"] != record["started"]
        res = carrier("start", "c")  # running already: left as it is
        assert (res.code, res.out) == (0, "c\n"), res.err
        assert carrier.record("c")["started"] == again["started"]
        assert carrier("rm", "-f", "c").code == 0

    def test_start_attach(self, carrier: Carrier, image: str) -> None:
        """start -a prints the container's output and exits with its exit code, each time."""
        assert carrier("create", "--name", "a", image, "sh", "-c", "echo hello; exit 3").code == 0
        for _ in range(2):
            res = carrier("start", "-a", "a")
            assert (res.code, res.out) == (3, "hello\n"), res.err
            record = carrier.record("a")
            assert (record["status"], record["exit_code"]) == ("exited", 3)
        assert carrier("rm", "a").code == 0

    def test_create_rm_start(self, carrier: Carrier, image: str) -> None:
        """A created --rm container is removed once its started run ends."""
        assert carrier("create", "--rm", "--name", "once", image, "true").code == 0
        assert ps_all(carrier) == {"once": "Created"}
        res = carrier("start", "-a", "once")
        assert res.code == 0, res.err
        assert ps_all(carrier) == {}

    def test_created_is_removable(self, carrier: Carrier, image: str) -> None:
        """rm removes a created container, and nothing of it is left."""
        assert carrier("create", "--name", "gone", image, "true").code == 0
        assert (carrier("rm", "gone").code, ps_all(carrier)) == (0, {})
        assert stored(carrier.root) == []

    def test_bad_input(self, carrier: Carrier, image: str) -> None:
        """Bad create or start input is one line and 125, and nothing is stored or started."""
        cases = [(["create", "--restart", "bogus", image, "true"], "restart"),
                 (["create", "-d", image, "true"], "-d"),
                 (["create", "--name", "bad/name", image, "true"], "invalid container name"),
                 (["start"], "start needs at least one container"),
                 (["start", "ghost"], "no such container: ghost"),
                 (["start", "-a", "x", "y"], "cannot start and attach multiple"),
                 (["restart", "ghost"], "no such container: ghost"),
                 (["restart", "-t", "soon", "ghost"], "-t/--time"),
                 (["rename", "ghost", "new"], "no such container: ghost")]
        for args, message in cases:
            res = carrier(*args)
            assert res.code == 125, (args, res)
            assert len(res.err.splitlines()) == 1, (args, res)
            assert res.err.startswith("carrier: ") and message in res.err, (args, res)  # noqa: PT018
        assert stored(carrier.root) == []

    def test_start_each_on_its_own(self, carrier: Carrier, image: str) -> None:
        """start of a missing container among others reports it in one line, starts the rest,
        and exits 125."""
        assert carrier("create", "--name", "ok", image, "sleep", "1000").code == 0
        res = carrier("start", "ghost", "ok")
        assert (res.code, res.out, res.err) == (125, "ok\n", "carrier: no such container: ghost\n")
        assert carrier.record("ok")["status"] == "running"
        assert carrier("rm", "-f", "ok").code == 0


class TestRestart:
    def test_restart_running_and_exited(self, carrier: Carrier, image: str) -> None:
        """restart stops a running container and starts it again (a new process); an exited
        one is started."""
        assert carrier("run", "-d", "--name", "r", image, "sleep", "1000").code == 0
        before = carrier.record("r")
        res = carrier("restart", "-t", "0", "r")
        assert (res.code, res.out) == (0, "r\n"), res.err
        after = carrier.record("r")
        assert after["status"] == "running"
        assert after["container_pid"] != before["container_pid"]
        assert after["started"] != before["started"]
        assert carrier("stop", "r").code == 0
        assert carrier.record("r")["status"] == "exited"
        assert carrier("restart", "r").code == 0
        assert carrier.record("r")["status"] == "running"
        assert carrier("rm", "-f", "r").code == 0


class TestRename:
    def test_rename(self, carrier: Carrier, image: str) -> None:
        """rename gives a stopped container its new name; the old one is free again."""
        assert carrier("create", "--name", "old", image, "true").code == 0
        res = carrier("rename", "old", "new")
        assert (res.code, res.err) == (0, "")
        assert ps_all(carrier) == {"new": "Created"}
        assert carrier("info", "old").code == 125
        assert carrier("create", "--name", "old", image, "true").code == 0
        assert ps_all(carrier) == {"new": "Created", "old": "Created"}
        assert carrier("rm", "new", "old").code == 0

    def test_rename_refused(self, carrier: Carrier, image: str) -> None:
        """rename to a name in use, to a bad name, or of a running container is one line and
        125, and both names stay as they were."""
        assert carrier("create", "--name", "a", image, "true").code == 0
        assert carrier("run", "-d", "--name", "b", image, "sleep", "1000").code == 0
        for args, message in ((["a", "b"], "the container name 'b' is already in use"),
                              (["a", "no/pe"], "invalid container name 'no/pe'"),
                              (["b", "c"], "cannot rename container b: it is running")):
            res = carrier("rename", *args)
            assert res.code == 125, res
            assert len(res.err.splitlines()) == 1, res.err
            assert message in res.err, res.err
        assert ps_all(carrier).keys() == {"a", "b"}
        assert carrier("rm", "-f", "a", "b").code == 0
