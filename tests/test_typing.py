"""What a type checker sees of the new public API: typed events and carrier.sync's options."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent

PROGRAM = """
import carrier
import carrier.sync


async def exits() -> list[int]:
    codes = []
    async for event in carrier.events(follow=False):
        if event.kind == "exited":
            codes.append(event.exit_code)  # narrowed by the Literal kind
        match event:
            case carrier.RestartingEvent(delay=delay):
                codes.append(int(delay))
    return codes


def sync() -> bytes:
    with carrier.sync.run("busybox", ["true"], network="none") as c:
        return c.exec(["true"]).stdout


def sync_on_trio() -> list[bytes]:
    with carrier.sync.using("trio")("busybox", ["true"], mtu=1500) as c:
        return [line.data for line in c.logs()]
"""


def mypy(program: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on *program*, with Carrier's sources (and its mypy settings)."""
    path = tmp_path / "user_program.py"
    path.write_text(textwrap.dedent(program))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull,
         "--config-file", str(SOURCE / "pyproject.toml"), str(path)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "MYPYPATH": str(SOURCE)},
        timeout=300,
    )


def test_events_and_sync_type_check(tmp_path: Path) -> None:
    """mypy --strict narrows an event by its Literal kind, and checks the options of
    carrier.sync.run and using("trio") as carrier.run's: a correct program passes, a misspelt
    option or a field read without narrowing fails."""
    good = mypy(PROGRAM, tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = mypy(PROGRAM.replace('network="none"', 'netwrok="none"').replace("mtu=", "mut=")
               .replace('if event.kind == "exited":', "if True:"), tmp_path)
    assert bad.returncode == 1
    assert 'Unexpected keyword argument "netwrok"' in bad.stdout
    assert 'Unexpected keyword argument "mut"' in bad.stdout
    assert 'has no attribute "exit_code"' in bad.stdout
