"""``pause`` and ``unpause``: refused in one line where the cgroup freezer is out of reach
(rootless on these cgroup v1/hybrid hosts), the container running on; a real freeze as root."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import Carrier, Result

V2_DELEGATED = Path("/sys/fs/cgroup/cgroup.controllers").exists()


def refused(res: Result) -> str:
    """The one line of a command that must have been refused."""
    assert res.code == 125, (res.out, res.err)
    assert res.err.startswith("carrier: "), res.err
    assert res.err.count("\n") == 1, res.err
    return res.err


def state_of(carrier: Carrier, name: str) -> tuple[str, str]:
    """(inspect's State.Status, ps's STATUS) of container *name*."""
    inspected = carrier("inspect", "-f", "{{.State.Status}}", name).out.strip()
    listed = carrier("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Status}}").out
    return inspected, listed.strip()


@pytest.mark.skipif(V2_DELEGATED, reason="this host has cgroup v2: the freezer may be reachable")
def test_rootless_pause_refused_and_container_runs_on(carrier: Carrier, image: str) -> None:
    """Rootless on a cgroup v1/hybrid host, pause is one line naming the missing cgroup
    freezer, exit 125, and the container keeps running (and unpause, created and missing
    containers are refused in one line too), its record unchanged."""
    assert carrier("run", "-d", "--name", "p", image, "sleep", "1000").code == 0
    assert carrier("create", "--name", "idle", image, "true").code == 0
    state = (carrier.root / "containers" / carrier.record("p")["id"] / "state.json").read_bytes()  # type: ignore[operator]
    line = refused(carrier("pause", "p"))
    assert "cgroup freezer is not reachable" in line
    assert "keeps running" in line
    assert state_of(carrier, "p")[0] == "running"
    assert state_of(carrier, "p")[1].startswith("Up ")
    assert carrier("exec", "p", "echo", "alive").out == "alive\n"  # not frozen
    assert "not paused" in refused(carrier("unpause", "p"))
    assert "can only pause running containers" in refused(carrier("pause", "idle"))
    assert "no such container" in refused(carrier("pause", "nope")).lower()
    assert (carrier.root / "containers" / carrier.record("p")["id"] / "state.json").read_bytes() == state  # type: ignore[operator]
    assert carrier("rm", "-f", "p", "idle").code == 0


@pytest.mark.root
def test_root_pause_freezes_and_unpause_thaws(carrier: Carrier, image: str) -> None:
    """As root runc reaches the freezer: pause freezes the container (runc and inspect say
    paused, ps says Paused), a second pause is refused, unpause thaws it and it runs on."""
    assert carrier("run", "-d", "--name", "p", image, "sleep", "1000").code == 0
    cid = str(carrier.record("p")["id"])
    runtime = ["runc", "--root", str(carrier.root / "runtime"), "state", cid]
    res = carrier("pause", "p")
    assert (res.code, res.out) == (0, "p\n"), res.err
    assert json.loads(subprocess.run(runtime, capture_output=True, check=True).stdout)["status"] \
        == "paused"
    assert state_of(carrier, "p") == ("paused", "Paused")
    assert "already paused" in refused(carrier("pause", "p"))
    res = carrier("unpause", "p")
    assert (res.code, res.out) == (0, "p\n"), res.err
    assert json.loads(subprocess.run(runtime, capture_output=True, check=True).stdout)["status"] \
        == "running"
    assert state_of(carrier, "p")[0] == "running"
    assert carrier("exec", "p", "echo", "thawed").out == "thawed\n"
    assert carrier("rm", "-f", "p").code == 0
