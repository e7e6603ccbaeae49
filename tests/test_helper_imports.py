"""Helpers that Carrier starts with ``python -m`` (the named network's supervisor, the ``cp``
transfer worker, the fork server) import the installed ``carrier`` package, never a ``carrier/``
folder that lies in the directory the user runs ``carrier`` from. Rootless, real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Carrier, Result
from helpers import wait_pidfd

HELPERS = ["pasta", "slirp4netns"]


@pytest.fixture
def decoy(tmp_path: Path) -> tuple[Path, Path]:
    """A working directory holding a ``carrier/`` package that leaves a marker file and fails
    when imported; (the directory, the marker)."""
    cwd = tmp_path / "project"
    (cwd / "carrier").mkdir(parents=True)
    marker = tmp_path / "decoy-imported"
    (cwd / "carrier" / "__init__.py").write_text(
        f"import os, sys\n"
        f"with open({str(marker)!r}, 'a') as f:\n"
        f"    f.write(' '.join(sys.argv) + '\\n')\n"
        f"raise SystemExit('the decoy carrier package was imported')\n")
    return cwd, marker


def _carrier_in(carrier: Carrier, cwd: Path, *args: str) -> Result:
    """``carrier ARGS`` through the installed console script, run from *cwd*."""
    script = Path(sys.executable).parent / "carrier"
    proc = subprocess.run([str(script), *args], cwd=cwd, env=carrier.env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("helper", HELPERS)
def test_network_supervisor_ignores_cwd_package(carrier: Carrier, image: str, helper: str,
                                                decoy: tuple[Path, Path]) -> None:
    """A named network's supervisor, started by a run from a directory holding a ``carrier/``
    package, imports the installed package: the run succeeds and the decoy is never imported."""
    cwd, marker = decoy
    assert carrier("network", "create", "n", "-o", f"helper={helper}").code == 0
    res = _carrier_in(carrier, cwd, "run", "--rm", "--network", "n", image, "echo", "ok")
    assert (res.code, res.out) == (0, "ok\n"), res
    assert not marker.exists(), marker.read_text()
    run = carrier.root / "networks" / "n" / "run.json"
    if run.exists():  # the supervisor ends once its last container has left
        wait_pidfd(int(json.loads(run.read_text())["supervisor_pid"]))
    assert carrier("network", "rm", "n").code == 0


def test_cp_worker_ignores_cwd_package(carrier: Carrier, image: str, tmp_path: Path,
                                       decoy: tuple[Path, Path]) -> None:
    """``cp`` into and out of a running container, and out of a stopped one, from a directory
    holding a ``carrier/`` package: the transfer worker imports the installed package."""
    cwd, marker = decoy
    (cwd / "in.txt").write_text("to the container\n")
    assert carrier("run", "-d", "--name", "c", "--network", "none", image,
                   "sleep", "1000").code == 0
    res = _carrier_in(carrier, cwd, "cp", "in.txt", "c:/tmp/in.txt")
    assert res.code == 0, res
    res = _carrier_in(carrier, cwd, "cp", "c:/tmp/in.txt", "back.txt")
    assert res.code == 0, res
    assert (cwd / "back.txt").read_text() == "to the container\n"
    assert carrier("stop", "-t", "0", "c").code == 0
    res = _carrier_in(carrier, cwd, "cp", "c:/tmp/in.txt", "stopped.txt")
    assert res.code == 0, res
    assert (cwd / "stopped.txt").read_text() == "to the container\n"
    assert not marker.exists(), marker.read_text()
    assert carrier("rm", "c").code == 0
