"""Lifecycle events, one JSON line each, appended to ``events.jsonl`` under the Carrier root by
every supervisor of that root (``O_APPEND``: concurrent writers never interleave a line).

Readers follow the file: its writers are other processes with nothing to signal on, so a
follower re-reads the new bytes every ``interval`` (one read of an unchanged file is cheap).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import anyio


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


class _Reader:
    """The events file read incrementally: each call gives the complete new lines."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.pending = b""

    def new(self) -> list[dict[str, Any]]:
        self.pending += self.f.read()
        *lines, self.pending = self.pending.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]


def _open(root_path: Path) -> IO[bytes]:
    path = root_path / "events.jsonl"
    path.touch(mode=0o600, exist_ok=True)
    return path.open("rb")


def stream(root_path: Path, *, follow: bool = False,
           interval: float = 0.1) -> Iterator[dict[str, Any]]:
    """Every event so far, oldest first; with *follow*, then each new one as it is written."""
    with _open(root_path) as f:
        reader = _Reader(f)
        while True:
            batch = reader.new()
            yield from batch
            if not batch:
                if not follow:
                    return
                time.sleep(interval)


async def events(root: Path | str | None = None, *, follow: bool = True,
                 interval: float = 0.1) -> AsyncIterator[dict[str, Any]]:
    """Lifecycle events of every supervisor of the Carrier root, as an async iterator: those
    so far, then (with *follow*) each new one. Stop iterating, or cancel, to end it."""
    from .._util._root import Root

    with _open(Root.open(root).path) as f:
        reader = _Reader(f)
        while True:
            batch = reader.new()
            for event in batch:
                yield event
            if not batch:
                if not follow:
                    return
                await anyio.sleep(interval)
