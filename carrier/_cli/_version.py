"""``carrier version``: Carrier's version and those of the tools it runs, as ``podman version``
shows its own."""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
from importlib import metadata
from typing import Literal

from .._images._platform import Platform

TOOLS = ("runc", "pasta", "slirp4netns")
"""The programs Carrier runs containers with: the OCI runtime and the network helpers."""


def _carrier_version() -> str:
    try:
        return metadata.version("carrier")
    except metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def tool_version(tool: str) -> dict[str, str | None]:
    """*tool*'s path, version number and the first line of its ``--version`` output (all None
    when it is not on PATH; the number is None when the line names none, as Debian's pasta)."""
    path = shutil.which(tool)
    if path is None:
        return {"Path": None, "Version": None, "Line": None}
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5,
                             stdin=subprocess.DEVNULL)
        text = out.stdout + out.stderr
    except (OSError, subprocess.TimeoutExpired) as e:
        text = f"cannot run it: {e}"
    # pasta without syslog precedes each line with "Failed to send N bytes to syslog".
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "syslog" not in ln]
    line = lines[0] if lines else ""
    number = re.search(r"\bversion\s+v?([0-9][^\s,]*)", line)
    return {"Path": path, "Version": number[1] if number else None, "Line": line or None}


def version(*, format: Literal["text", "json"] = "text") -> int:
    """Show the versions of Carrier, Python, and the tools it runs: runc, pasta, slirp4netns.

    Parameters
    ----------
    format: str
        text or json.
    """
    info: dict[str, dict[str, str | None]] = {
        "Carrier": {"Version": _carrier_version(), "Python": platform.python_version(),
                    "OsArch": str(Platform.host())},
    }
    for tool in TOOLS:
        info[tool] = tool_version(tool)
    if format == "json":
        print(json.dumps(info, indent=2))
        return 0
    rows = [("Carrier:", info["Carrier"]["Version"]), ("Python:", info["Carrier"]["Python"]),
            ("OS/Arch:", info["Carrier"]["OsArch"])]
    for tool in TOOLS:
        found = info[tool]
        shown = ("not found on PATH" if found["Path"] is None else
                 f"{found['Version'] or found['Line'] or 'unknown version'} ({found['Path']})")
        rows.append((f"{tool}:", shown))
    for label, value in rows:
        print(f"{label:<14}{value}")
    return 0
