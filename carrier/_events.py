"""Lifecycle events, one JSON line each, appended to ``events.jsonl`` under the Carrier root by
every supervisor of that root (``O_APPEND``: concurrent writers never interleave a line)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TYPES = ("created", "network-ready", "started", "exited", "restarting", "gave-up", "cleaned",
         "healthy", "unhealthy")


def emit(root_path: Path, container_id: str, name: str, kind: str, **attrs: Any) -> None:
    """Append one event: time (Unix seconds), container id and name, type, attributes."""
    line = json.dumps({"time": time.time(), "id": container_id, "name": name, "type": kind,
                       **attrs}, sort_keys=True) + "\n"
    fd = os.open(root_path / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def stream(root_path: Path, *, follow: bool = False,
           interval: float = 0.1) -> Iterator[dict[str, Any]]:
    """Every event so far, oldest first; with *follow*, then each new one as it is written.

    Following re-reads the file's new bytes every *interval* seconds: the writers are other
    processes with nothing to signal on, and a read of an unchanged file costs one fstat.
    """
    path = root_path / "events.jsonl"
    path.touch(mode=0o600, exist_ok=True)
    with path.open("rb") as f:
        pending = b""
        while True:
            chunk = f.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            elif not follow:
                return
            else:
                time.sleep(interval)
