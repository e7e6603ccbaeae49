"""Container records on disk: one private directory per container holding ``state.json``.

Status changes go through :meth:`Record.transition`, the one place that knows which moves are
legal. A running container's supervisor holds an exclusive ``flock`` on ``supervisor.lock`` for
its whole life, so "is the supervisor alive?" is a lock probe, immune to PID reuse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._util._atomic import read_json, try_lock, write_json
from .._util._errors import CarrierError, ConflictError, NotFoundError
from .._util._root import Root

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")


class Status(enum.StrEnum):
    """A container's lifecycle, as Docker names it."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


_ALLOWED = {
    Status.CREATED: {Status.RUNNING, Status.EXITED},
    Status.RUNNING: {Status.EXITED},
    Status.EXITED: {Status.CREATED},  # a restart reuses the record
}


def now() -> str:
    """The current UTC time as RFC 3339 text."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Spec:
    """What to run: everything the supervisor needs to (re)start the container."""

    image: str
    image_id: str
    args: list[str]
    env: list[str]
    cwd: str
    user: str
    hostname: str
    runtime: str = "runc"
    storage_driver: str = "copy"
    network: str = "auto"
    ports: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_option: list[str] = field(default_factory=list)
    add_host: list[str] = field(default_factory=list)
    host_loopback: bool = False
    mtu: int | None = None
    resolv_conf: str = "/etc/resolv.conf"
    stop_timeout: float = 10.0
    remove: bool = False
    detach: bool = False
    restart: str = "no"
    restart_delay: float = 0.1
    restart_max_delay: float = 10.0
    restart_intensity: int = 5
    restart_period: float = 10.0
    health_cmd: str | None = None
    health_interval: float = 30.0
    health_timeout: float = 30.0
    health_retries: int = 3
    health_start_period: float = 0.0
    health_on_failure: str = "none"


@dataclass
class Record:
    """The persisted state of one container."""

    id: str
    name: str
    spec: Spec
    created: str = field(default_factory=now)
    status: Status = Status.CREATED
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    supervisor_pid: int | None = None
    supervisor_start: int | None = None
    holder_pid: int | None = None
    holder_start: int | None = None
    container_pid: int | None = None
    network: dict[str, Any] | None = None
    restarts: int = 0
    health: dict[str, Any] | None = None

    def transition(self, new: Status) -> None:
        """Move to *new*, refusing moves the lifecycle does not allow."""
        if new not in _ALLOWED[self.status]:
            raise ConflictError(f"container {self.name}: cannot go from {self.status} to {new}")
        self.status = new

    def to_json(self) -> dict[str, Any]:
        """The record as stored in ``state.json``."""
        data = asdict(self)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        """Rebuild a record from ``state.json``."""
        spec = Spec(**data.pop("spec"))
        return cls(spec=spec, **{**data, "status": Status(data["status"])})


class Containers:
    """The container records under one Carrier root."""

    def __init__(self, root: Root) -> None:
        self.root = root

    def dir(self, cid: str) -> Path:
        """The container's private directory."""
        return self.root.containers / cid

    def create(self, spec: Spec, name: str | None) -> tuple[Record, int]:
        """Reserve a fresh id and *name* atomically and write the first record.

        Two processes racing for one name: exactly one ``symlink`` succeeds. Returns the record
        and the fd of the already-taken supervisor lock, which the supervisor keeps open.
        """
        cid = secrets.token_hex(32)
        if name is None:
            name = cid[:12]
        elif not _NAME_RE.match(name):
            raise CarrierError(f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        if not spec.hostname:
            spec.hostname = name if len(name) <= 63 else cid[:12]
        try:
            os.symlink(cid, self.root.names / name)
        except FileExistsError:
            raise ConflictError(f"the container name {name!r} is already in use") from None
        try:
            self.dir(cid).mkdir(mode=0o700)
            lock = try_lock(self.supervisor_lock(cid))
            assert lock is not None, "a new container directory cannot be locked already"
            record = Record(id=cid, name=name, spec=spec)
            self.save(record)
        except BaseException:
            os.unlink(self.root.names / name)
            raise
        return record, lock

    def save(self, record: Record) -> None:
        """Write the record atomically."""
        write_json(self.dir(record.id) / "state.json", record.to_json())

    def load(self, cid: str) -> Record:
        """Read one record by full id."""
        try:
            return Record.from_json(read_json(self.dir(cid) / "state.json"))
        except FileNotFoundError:
            raise NotFoundError(f"no such container: {cid}") from None

    def all(self) -> Iterator[Record]:
        """Every record, oldest first."""
        records = []
        for d in self.root.containers.iterdir():
            with contextlib.suppress(NotFoundError, ValueError):
                records.append(self.load(d.name))
        yield from sorted(records, key=lambda r: r.created)

    def find(self, ref: str) -> Record:
        """Find a container by name, full id or unique id prefix."""
        try:
            return self.load(os.readlink(self.root.names / ref))
        except (FileNotFoundError, OSError, NotFoundError):
            pass
        if re.fullmatch(r"[0-9a-f]{1,64}", ref):
            matches = [d.name for d in self.root.containers.iterdir() if d.name.startswith(ref)]
            if len(matches) == 1:
                return self.load(matches[0])
            if len(matches) > 1:
                raise CarrierError(f"container id prefix {ref!r} is ambiguous")
        raise NotFoundError(f"no such container: {ref}")

    def remove(self, record: Record) -> None:
        """Delete the container's directory and release its name."""
        from .._util._fs import remove_tree

        try:
            remove_tree(self.dir(record.id))
        except PermissionError:  # what the container's other users own (subordinate ids)
            from .._sandbox._idmap import remove_as_owner

            remove_as_owner(self.dir(record.id))
        with contextlib.suppress(FileNotFoundError):
            if os.readlink(self.root.names / record.name) == record.id:
                os.unlink(self.root.names / record.name)

    def supervisor_lock(self, cid: str) -> Path:
        """The file whose ``flock`` marks a live supervisor."""
        return self.dir(cid) / "supervisor.lock"

    def supervisor_alive(self, cid: str) -> bool:
        """True while some process holds the container's supervisor lock."""
        fd = try_lock(self.supervisor_lock(cid))
        if fd is None:
            return True
        os.close(fd)
        return False
