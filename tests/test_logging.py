"""Carrier's log events: stdlib logging for the library (the application decides), and the
CLI's own rendering on stderr, unchanged."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Carrier

SCRIPT = '''
import logging, sys
import anyio
import carrier

{config}

async def main():
    try:
        async with carrier.run("busybox", ["true"], root=sys.argv[1], pull="never"):
            pass
    except carrier.ImageNotFoundError:
        print("not found, as expected")

anyio.run(main, backend=sys.argv[2])
'''


def damage_images(root: Path) -> Path:
    """A root whose image index is not JSON, so that reading it logs a warning."""
    root.mkdir(parents=True, exist_ok=True)
    index = root / "images.json"
    index.write_text("garbage")
    return index


def run_script(root: Path, config: str, backend: str) -> subprocess.CompletedProcess[str]:
    """SCRIPT with the application's logging *config*, run in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", SCRIPT.format(config=config), str(root), backend],
                          capture_output=True, text=True, timeout=60, check=True)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_library_never_writes_to_stderr_by_itself(carrier_root: Path, backend: str) -> None:
    """With no logging configuration of the application's, a warning event of the library
    (a damaged image index) reaches neither stderr nor stdout."""
    damage_images(carrier_root)
    proc = run_script(carrier_root, "", backend)
    assert proc.stdout == "not found, as expected\n"
    assert proc.stderr == ""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_application_logging_config_controls_the_output(carrier_root: Path, backend: str) -> None:
    """The application's stdlib logging configuration receives Carrier's events on the
    ``carrier`` logger (readable message, fields apart), and its levels silence them."""
    index = damage_images(carrier_root)
    config = '''
class Fields(logging.Handler):
    def emit(self, record):
        print("fields:", record.carrier_event, record.carrier_fields["file"])

logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                    format="%(name)s|%(levelname)s|%(message)s")
logging.getLogger("carrier").addHandler(Fields())
'''
    out = run_script(carrier_root, config, backend)
    assert out.stderr == ""
    assert out.stdout.splitlines() == [
        f"fields: images.damaged {index}",
        f"carrier|WARNING|images.damaged file={index} problem='not JSON: Expecting value: "
        "line 1 column 1 (char 0)'",
        "not found, as expected"]
    quiet = run_script(carrier_root, 'logging.basicConfig(stream=sys.stdout)\n'
                       'logging.getLogger("carrier").setLevel(logging.ERROR)', backend)
    assert (quiet.stdout, quiet.stderr) == ("not found, as expected\n", "")


def test_cli_output_is_as_before(cli: Carrier) -> None:
    """The CLI still renders events on stderr as structlog did: console lines, JSON lines
    with --log-format json (the same keys in the same order), nothing below --log-level."""
    index = damage_images(cli.root)
    problem = "not JSON: Expecting value: line 1 column 1 (char 0)"
    line = cli("--log-format", "json", "images").err.splitlines()
    assert len(line) == 1
    event = json.loads(line[0])
    assert list(event) == ["file", "problem", "event", "level", "timestamp"]
    assert (event["file"], event["problem"], event["event"], event["level"]) == \
        (str(index), problem, "images.damaged", "warning")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[0-9:.]+Z", event["timestamp"])
    console = cli("--log-format", "console", "images").err
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[0-9:.]+Z \[warning  \] images\.damaged +"
                        rf"file={re.escape(str(index))} problem='{re.escape(problem)}'\n", console)
    assert cli("--log-level", "error", "images").err == ""
