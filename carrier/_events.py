"""Lifecycle events, one JSON line each, appended to ``events.jsonl`` under the Carrier root by
every supervisor of that root (``O_APPEND``: concurrent writers never interleave a line)."""

from __future__ import annotations

import json
import os
import time
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


def read(root_path: Path) -> list[dict[str, Any]]:
    """Every event so far, oldest first."""
    try:
        text = (root_path / "events.jsonl").read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
