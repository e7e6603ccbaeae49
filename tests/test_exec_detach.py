"""exec -d: a command started in a running container without waiting for it, rootless."""

from __future__ import annotations

from conftest import Carrier


def test_exec_detach_runs_inside(carrier: Carrier, image: str) -> None:
    """exec -d returns 0 without waiting for its command, which then runs inside the container
    (not as its PID 1) until the container ends."""
    assert carrier("run", "-d", "--name", "box", image, "sleep", "1000").code == 0
    res = carrier("exec", "-d", "box", "sleep", "4242")  # would hang until its timeout if waited for
    assert (res.code, res.out, res.err) == (0, "", "")
    res = carrier("exec", "box", "ps", "-o", "pid,args")
    assert res.code == 0, res.err
    rows = [line.split(None, 1) for line in res.out.splitlines()[1:]]
    assert [pid for pid, args in rows if args == "sleep 4242"] not in ([], ["1"]), res.out
    assert carrier("rm", "-f", "box").code == 0


def test_exec_detach_missing_command(carrier: Carrier, image: str) -> None:
    """exec -d of a command that is not there fails with 127, as a waited-for exec does."""
    assert carrier("run", "-d", "--name", "box", image, "sleep", "1000").code == 0
    assert carrier("exec", "-d", "box", "/nope").code == 127
    assert carrier("rm", "-f", "box").code == 0


def test_exec_detach_bad_input(carrier: Carrier, image: str) -> None:
    """exec -d with -t or -i, or of a container that does not run, is one line and 125."""
    assert carrier("create", "--name", "idle", image, "true").code == 0
    for args in (["-d", "-t", "idle", "true"], ["-di", "idle", "true"], ["-d", "idle", "true"],
                 ["-d", "ghost", "true"]):
        res = carrier("exec", *args)
        assert res.code == 125, (args, res)
        assert len(res.err.splitlines()) == 1, (args, res)
        assert res.err.startswith("carrier: "), (args, res)
    assert carrier.record("idle")["status"] == "created"
    assert carrier("rm", "idle").code == 0
