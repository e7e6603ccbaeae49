"""carrier version and carrier help, as Podman users type them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from conftest import Carrier


def first_line(tool: str) -> str:
    """The first line of ``TOOL --version`` that is not pasta's syslog complaint."""
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    return next(ln.strip() for ln in (out.stdout + out.stderr).splitlines()
                if ln.strip() and "syslog" not in ln)


def test_version_json(carrier: Carrier) -> None:
    """version --format json gives Carrier's version and each tool's path and version, as the
    tools themselves print them."""
    res = carrier("version", "--format", "json")
    assert res.code == 0, res.err
    info = json.loads(res.out)
    assert info["Carrier"]["Version"] == metadata.version("carrier")
    for tool in ("runc", "pasta", "slirp4netns"):
        assert info[tool]["Path"] == shutil.which(tool)
        assert info[tool]["Line"] == first_line(tool)
    assert info["runc"]["Version"] == re.search(r"version (\S+)", first_line("runc"))[1]  # type: ignore[index]
    assert info["slirp4netns"]["Version"] == first_line("slirp4netns").split()[-1]


def test_version_text(carrier: Carrier) -> None:
    """version prints one line each for Carrier, Python, OS/Arch, runc, pasta and slirp4netns."""
    res = carrier("version")
    assert res.code == 0, res.err
    labels = [line.split(":", 1)[0] for line in res.out.splitlines()]
    assert labels == ["Carrier", "Python", "OS/Arch", "runc", "pasta", "slirp4netns"]
    assert f"({shutil.which('runc')})" in res.out


def test_version_tool_missing(carrier: Carrier, tmp_path: Path) -> None:
    """A tool that is not on PATH is shown as missing, and version still succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("runc", "pasta"):
        (bin_dir / tool).symlink_to(shutil.which(tool))  # type: ignore[arg-type]
    carrier.env["PATH"] = str(bin_dir)
    res = carrier("version")
    assert res.code == 0, res.err
    assert res.out.splitlines()[-1].split() == ["slirp4netns:", "not", "found", "on", "PATH"]
    carrier.env["PATH"] = os.environ["PATH"]


def test_help(carrier: Carrier) -> None:
    """help prints the same help as --help, for Carrier and for a (sub)command."""
    for command in ([], ["run"], ["volume", "ls"]):
        res = carrier("help", *command)
        assert res.code == 0, res.err
        assert res.out == carrier(*command, "--help").out
        assert res.out.startswith(f"Usage: carrier {' '.join([*command, ''])}".rstrip())


def test_bad_input(carrier: Carrier) -> None:
    """An unknown command for help, or an unknown version format, is one line and 125."""
    for args, words in ((["help", "nope"], "unknown command 'nope'"),
                        (["help", "volume", "nope"], "unknown command 'volume nope'"),
                        (["version", "--format", "yaml"], "yaml")):
        res = carrier(*args)
        assert res.code == 125, res
        assert len(res.err.splitlines()) == 1, res
        assert res.err.startswith("carrier: "), res
        assert words in res.err, res
