"""The command line's argument collections: built once per process, never shared between parses."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import cyclopts
import pytest

from carrier._cli import _app

RUN = ["run", "--rm", "--network", "pasta", "busybox", "true"]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the commands whose argument collection cyclopts builds, in order."""
    built: list[str] = []
    build = cyclopts.App.assemble_argument_collection

    def counted(self: cyclopts.App, **kw: Any) -> cyclopts.ArgumentCollection:
        built.append(self.name[0])
        return build(self, **kw)

    monkeypatch.setattr(cyclopts.App, "assemble_argument_collection", counted)
    return built


def parse(argv: list[str]) -> dict[str, Any]:
    """The arguments ``run`` gets from *argv*, parsed as ``main`` parses it (meta app first)."""
    _app.app.meta.parse_args(list(argv))
    _command, bound, _ignored = _app.app.parse_args(_app._split_run(list(argv)))
    return dict(bound.arguments)


def test_a_second_parse_builds_nothing(builds: list[str]) -> None:
    """Once a ``run`` command line has been parsed, parsing another builds no collection."""
    parse(RUN)
    builds.clear()
    parse(["run", "-d", "--name", "web", "busybox", "sleep", "9"])
    assert builds == []


def test_the_fork_server_builds_them_before_it_forks() -> None:
    """What the fork server does before it forks leaves nothing for a ``run`` or a ``ps`` to
    build (in a fresh interpreter, so no earlier parse has built them)."""
    program = textwrap.dedent(f"""
        import cyclopts
        from carrier._cli import _app, _zygote
        _zygote._warm_parsers()
        built = []
        build = cyclopts.App.assemble_argument_collection
        def counted(self, **kw):
            built.append(self.name[0])
            return build(self, **kw)
        cyclopts.App.assemble_argument_collection = counted
        for argv in ({RUN!r}, ["ps", "-a"], ["--log-level", "debug", "rm", "-f", "x"]):
            _, bound, _ = _app.app.meta.parse_args(list(argv))
            _app.app.parse_args(_app._split_run(list(bound.arguments["tokens"])))
        print(built)
    """)
    res = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=60, check=False)
    assert (res.returncode, res.stdout.strip()) == (0, "[]"), res.stderr


def test_a_parse_keeps_nothing_of_the_one_before() -> None:
    """A parse sees none of the options or values of an earlier parse in the same process."""
    first = parse(["run", "-e", "A=1", "--name", "one", "-p", "8080:80", "busybox", "echo", "x"])
    second = parse(["run", "busybox", "true"])
    assert first["name"] == "one"
    assert second.get("name") is None
    assert not second.get("env")
    assert not second.get("publish")
    assert list(second["command"]) == ["true"]
