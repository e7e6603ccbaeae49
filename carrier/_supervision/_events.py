"""Lifecycle events, one JSON line each, appended to ``events.jsonl`` under the Carrier root by
every supervisor of that root (``O_APPEND``: concurrent writers never interleave a line).

Readers follow the file: its writers are other processes with nothing to signal on, so a
follower re-reads the new bytes every ``interval`` (one read of an unchanged file is cheap).
The library's :func:`events` gives each line as a typed, frozen event object whose ``kind`` is
a ``Literal``; the CLI prints the lines' dicts as they are.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Literal, TypeAlias

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


@dataclass(frozen=True, kw_only=True)
class _Base:
    """What every event has: when (Unix seconds), and which container."""

    time: float
    id: str
    name: str


@dataclass(frozen=True, kw_only=True)
class CreatedEvent(_Base):
    """The container's record was created from *image*."""

    image: str
    kind: Literal["created"] = field(default="created", init=False)


@dataclass(frozen=True, kw_only=True)
class NetworkReadyEvent(_Base):
    """The container's network (*mode*: pasta, slirp4netns, none, host) is configured."""

    mode: str
    kind: Literal["network-ready"] = field(default="network-ready", init=False)


@dataclass(frozen=True, kw_only=True)
class StartedEvent(_Base):
    """The container's command runs (after *restarts* restarts)."""

    restarts: int
    kind: Literal["started"] = field(default="started", init=False)


@dataclass(frozen=True, kw_only=True)
class HealthyEvent(_Base):
    """The health check passed (after not passing before)."""

    kind: Literal["healthy"] = field(default="healthy", init=False)


@dataclass(frozen=True, kw_only=True)
class UnhealthyEvent(_Base):
    """The health check failed its allowed number of times."""

    kind: Literal["unhealthy"] = field(default="unhealthy", init=False)


@dataclass(frozen=True, kw_only=True)
class RestartingEvent(_Base):
    """A run ended with *exit_code*; the next starts after *delay* seconds."""

    delay: float
    restarts: int
    exit_code: int
    kind: Literal["restarting"] = field(default="restarting", init=False)


@dataclass(frozen=True, kw_only=True)
class GaveUpEvent(_Base):
    """The restart policy gave up (*reason*) after *restarts* restarts."""

    reason: str
    restarts: int
    kind: Literal["gave-up"] = field(default="gave-up", init=False)


@dataclass(frozen=True, kw_only=True)
class ExitedEvent(_Base):
    """The container ended for good: *exit_code*, and *reason* (a ``carrier.Reason`` value)."""

    exit_code: int
    reason: str
    kind: Literal["exited"] = field(default="exited", init=False)


@dataclass(frozen=True, kw_only=True)
class CleanedEvent(_Base):
    """Everything of the container's group is gone (processes, mounts, runtime state)."""

    exit_code: int
    kind: Literal["cleaned"] = field(default="cleaned", init=False)


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(_Base):
    """An event this version does not know (written by another version of Carrier): its
    kind as written is *raw_kind*, its other attributes *attrs*."""

    raw_kind: str
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)
    kind: Literal["unknown"] = field(default="unknown", init=False)


Event: TypeAlias = (CreatedEvent | NetworkReadyEvent | StartedEvent | HealthyEvent
                    | UnhealthyEvent | RestartingEvent | GaveUpEvent | ExitedEvent | CleanedEvent
                    | UnknownEvent)
"""A lifecycle event; match on its class or on ``event.kind`` (both narrow the type)."""

_KINDS: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (CreatedEvent, NetworkReadyEvent, StartedEvent, HealthyEvent, UnhealthyEvent,
                RestartingEvent, GaveUpEvent, ExitedEvent, CleanedEvent)
}


def typed(raw: dict[str, Any]) -> Event:
    """The typed event for one line of the events file; a kind or a shape this version does
    not know becomes an :class:`UnknownEvent` rather than an error."""
    attrs = dict(raw)
    base: dict[str, Any] = {"time": float(attrs.pop("time", 0.0)), "id": str(attrs.pop("id", "")),
            "name": str(attrs.pop("name", ""))}
    kind = str(attrs.pop("type", ""))
    cls = _KINDS.get(kind)
    if cls is not None:
        names = {f.name for f in fields(cls) if f.init} - set(base)
        try:
            return cls(**base, **{k: v for k, v in attrs.items() if k in names})
        except TypeError:  # an attribute missing: keep what there is
            pass
    return UnknownEvent(**base, raw_kind=kind, attrs=attrs)


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
                 interval: float = 0.1) -> AsyncIterator[Event]:
    """Lifecycle events of every supervisor of the Carrier root, as typed, frozen event
    objects (:data:`Event`): those so far, then (with *follow*) each new one. Stop iterating,
    or cancel, to end it."""
    from .._util._root import Root

    with _open(Root.open(root).path) as f:
        reader = _Reader(f)
        while True:
            batch = reader.new()
            for event in batch:
                yield typed(event)
            if not batch:
                if not follow:
                    return
                await anyio.sleep(interval)
