"""Container records on disk: one private directory per container holding ``state.json``.

Status changes go through :meth:`Record.transition`, the one place that knows which moves are
legal. A running container's supervisor holds an exclusive ``flock`` on ``supervisor.lock`` for
its whole life, so "is the supervisor alive?" is a lock probe, immune to PID reuse. Creators
hold a shared ``flock`` on the ``names/`` directory while they reserve a name and write the
first record (removals too), so whoever holds it exclusively knows that a directory without
``state.json`` is a creation that died (:meth:`Containers.repair`). The record's format across
versions is ``_schema``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import fcntl
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._util._atomic import held, try_lock, write_json
from .._util._errors import CarrierError, ConflictError, NameInUseError, NotFoundError
from .._util._logging import log
from .._util._root import Root
from ._schema import RECORD_VERSION, Damaged, convert, migrate, salvage, split

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
_warned: set[str] = set()  # damaged files already reported by this process


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
    network: str = "auto"  # a helper mode, or the name of a network (``_networks``)
    network_aliases: list[str] = field(default_factory=list)  # more names on a named network
    ip: str | None = None  # a fixed address on a named network (``run --ip``)
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
    tty: bool = False  # the command gets a pseudo-terminal (run -t)
    interactive: bool = False  # -i: stdin kept open (detached: a pipe its supervisor holds)
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
    volumes: list[str] = field(default_factory=list)  # -v HOST|NAME:CONTAINER[:ro|rw]
    mounts: list[str] = field(default_factory=list)  # --mount type=...,src=...,dst=...
    tmpfs: list[str] = field(default_factory=list)  # --tmpfs /path[:opts]
    read_only: bool = False  # the root filesystem read-only
    read_only_tmpfs: bool = True  # with read_only: tmpfs on /run, /tmp and /var/tmp
    labels: dict[str, str] = field(default_factory=dict)  # e.g. the tree that made it
    log_opt: list[str] = field(default_factory=list)  # --log-opt max-size=SIZE, max-file=N
    init: bool = False  # --init: catatonit is PID 1, the command its child
    cap_add: list[str] = field(default_factory=list)  # --cap-add, on Podman's default set
    cap_drop: list[str] = field(default_factory=list)  # --cap-drop (ALL too)
    privileged: bool = False  # every capability of the user namespace, no seccomp
    security_opt: list[str] = field(default_factory=list)  # no-new-privileges, seccomp=...
    ulimit: list[str] = field(default_factory=list)  # --ulimit NAME=SOFT[:HARD]
    pids_limit: int | None = None  # cgroup limits (root only here; see _runtime._security)
    memory: int | None = None  # bytes
    cpus: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a newer Carrier, kept


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
    version: int = RECORD_VERSION  # the format version it is written as
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a newer Carrier, kept

    def transition(self, new: Status) -> None:
        """Move to *new*, refusing moves the lifecycle does not allow."""
        if new not in _ALLOWED[self.status]:
            raise ConflictError(f"container {self.name}: cannot go from {self.status} to {new}")
        self.status = new

    def to_json(self) -> dict[str, Any]:
        """The record as stored in ``state.json``, with the fields of a newer Carrier kept."""
        data = asdict(self)
        data["status"] = str(self.status)
        spec = data.pop("spec")
        data["spec"] = {**spec.pop("extra"), **spec}
        data = {**data.pop("extra"), **data}
        data["version"] = max(RECORD_VERSION, self.version)
        return data

    @classmethod
    def from_json(cls, data: Any, *, path: str = "state.json", cid: str | None = None) -> Record:
        """Rebuild a record from the JSON of ``state.json`` (of container *cid*, if given):
        migrated, type-checked, unknown fields kept.

        Raises :class:`~._schema.Damaged` (with what can be salvaged) if it cannot be read.
        """
        if not isinstance(data, dict):
            raise Damaged(path, "not a JSON object", {})
        try:
            data, written = migrate(data)
            known, extra = split(cls, data)
            if not isinstance(known.get("spec"), dict):
                raise ValueError("no spec object")
            spec_known, spec_extra = split(Spec, known["spec"])
            record = convert({**known, "spec": spec_known}, cls)
            if cid is not None and record.id != cid:
                raise ValueError(f"its id {record.id[:12]} is not its directory's")
        except ValueError as e:
            found = salvage(cls, data)
            found["spec"] = salvage(Spec, data.get("spec"))
            raise Damaged(path, str(e), found) from None
        record.spec.extra = spec_extra
        record.extra = extra
        record.version = written
        return record


class Containers:
    """The container records under one Carrier root."""

    def __init__(self, root: Root) -> None:
        self.root = root

    def dir(self, cid: str) -> Path:
        """The container's private directory."""
        return self.root.containers / cid

    def _names_lock(self, *, shared: bool, wait: bool = True) -> int | None:
        """A ``flock`` on the ``names/`` directory itself (no file to create, also on a full
        disk): shared by creations and removals in progress, exclusive for :meth:`repair`.
        Returns the fd holding it, or None if *wait* is false and it is taken."""
        fd = os.open(self.root.names, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
                        | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _names_shared(self) -> Iterator[None]:
        fd = self._names_lock(shared=True)
        assert fd is not None
        try:
            yield
        finally:
            os.close(fd)

    def create(self, spec: Spec, name: str | None) -> tuple[Record, int]:
        """Reserve a fresh id and *name* atomically and write the first record.

        Two processes racing for one name: exactly one ``symlink`` succeeds. Returns the record
        and the fd of the already-taken supervisor lock, which the supervisor keeps open. A
        failure (a full disk) leaves neither the name nor the directory behind.
        """
        cid = secrets.token_hex(32)
        if name is None:
            name = cid[:12]
        elif not _NAME_RE.match(name):
            raise CarrierError(f"invalid container name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        if not spec.hostname:
            spec.hostname = name if len(name) <= 63 else cid[:12]
        with self._names_shared():
            try:
                os.symlink(cid, self.root.names / name)
            except FileExistsError:
                raise NameInUseError(f"the container name {name!r} is already in use") from None
            lock: int | None = None
            try:
                self.dir(cid).mkdir(mode=0o700)
                lock = try_lock(self.supervisor_lock(cid))
                assert lock is not None, "a new container directory cannot be locked already"
                record = Record(id=cid, name=name, spec=spec)
                self.save(record)
            except BaseException:
                self._remove_files(cid, name)
                if lock is not None:
                    os.close(lock)
                raise
        return record, lock

    def rename(self, record: Record, new: str) -> None:
        """Give *record* the name *new*, reserved as :meth:`create` reserves one (the caller
        holds its supervisor lock, so no supervisor writes the record meanwhile)."""
        if not _NAME_RE.match(new):
            raise CarrierError(f"invalid container name {new!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        old = record.name
        with self._names_shared():
            try:
                os.symlink(record.id, self.root.names / new)
            except FileExistsError:
                raise NameInUseError(f"the container name {new!r} is already in use") from None
            record.name = new
            try:
                self.save(record)
            except BaseException:
                record.name = old
                os.unlink(self.root.names / new)
                raise
            with contextlib.suppress(OSError):
                if os.readlink(self.root.names / old) == record.id:
                    os.unlink(self.root.names / old)

    def save(self, record: Record) -> None:
        """Write the record atomically."""
        write_json(self.dir(record.id) / "state.json", record.to_json())

    def load(self, cid: str) -> Record:
        """Read one record by full id; :class:`Damaged` if it cannot be read."""
        path = self.dir(cid) / "state.json"
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such container: {cid}") from None
        try:
            data = json.loads(raw)
        except ValueError:
            raise Damaged(str(path), "not JSON" if raw.strip() else "empty", {}) from None
        return Record.from_json(data, path=str(path), cid=cid)

    def ids(self) -> list[str]:
        """The ids of every container directory."""
        try:
            return [d.name for d in self.root.containers.iterdir() if not d.name.startswith(".")]
        except FileNotFoundError:
            return []

    def scan(self) -> tuple[list[Record], dict[str, Damaged]]:
        """Every readable record, oldest first, and the damaged ones by id (each reported once
        per process, as one warning line naming the file)."""
        records, damaged = [], {}
        for cid in self.ids():
            try:
                records.append(self.load(cid))
            except NotFoundError:  # being created or removed, or a creation that died (repair)
                if self._lost_record(cid):
                    damaged[cid] = Damaged(str(self.dir(cid) / "state.json"), "missing", {})
                    warn(damaged[cid])
                continue
            except Damaged as d:
                damaged[cid] = d
                warn(d)
        return sorted(records, key=lambda r: r.created), damaged

    def all(self) -> Iterator[Record]:
        """Every readable record, oldest first."""
        yield from self.scan()[0]

    def resolve(self, ref: str) -> str:
        """The id of the container named *ref*, or with full id or unique id prefix *ref*."""
        with contextlib.suppress(OSError):
            cid = os.readlink(self.root.names / ref)
            if "/" not in cid and self.dir(cid).is_dir():
                return cid
        if re.fullmatch(r"[0-9a-f]{1,64}", ref):
            matches = [cid for cid in self.ids() if cid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise CarrierError(f"container id prefix {ref!r} is ambiguous")
        raise NotFoundError(f"no such container: {ref}")

    def find(self, ref: str) -> Record:
        """Find a container by name, full id or unique id prefix."""
        return self.load(self.resolve(ref))

    def name_of(self, cid: str) -> str | None:
        """The name reserved for *cid* (for a record that cannot tell it)."""
        with contextlib.suppress(OSError):
            for link in self.root.names.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(link) == cid:
                        return link.name
        return None

    def remove(self, record: Record) -> None:
        """Delete the container's directory and release its name (the caller holds its
        supervisor lock, so nothing else works on it)."""
        with self._names_shared():  # no repair in between
            self._remove_files(record.id, record.name)

    def remove_id(self, cid: str) -> None:
        """:meth:`remove` for a container whose record cannot be read."""
        with self._names_shared():
            self._remove_files(cid, self.name_of(cid))

    def _remove_files(self, cid: str, name: str | None) -> None:
        from .._util._fs import remove_tree

        try:
            remove_tree(self.dir(cid))
        except PermissionError:  # what the container's other users own (subordinate ids)
            from .._sandbox._idmap import remove_as_owner

            remove_as_owner(self.dir(cid))
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                if os.readlink(self.root.names / name) == cid:
                    os.unlink(self.root.names / name)

    def repair(self) -> list[str]:
        """Remove what creations that died left: a directory without ``state.json`` whose lock
        nobody holds, and names whose directory is gone. Returns the names released.

        Runs only while no creation is in progress anywhere (the ``names/`` lock exclusively,
        never waited for): a name being created right now is never taken.
        """
        try:
            fd = self._names_lock(shared=False, wait=False)
        except OSError:
            return []
        if fd is None:  # a creation or removal is in progress: repair another time
            return []
        released: list[str] = []
        try:
            for cid in self.ids():
                if self._half_created(cid):
                    name = self.name_of(cid)
                    self._remove_files(cid, name)
                    released.append(name or cid[:12])
                    log.warning("container.half-created-removed", container=name or cid[:12])
            with contextlib.suppress(OSError):
                for link in self.root.names.iterdir():
                    with contextlib.suppress(OSError):
                        cid = os.readlink(link)
                        if "/" in cid or not self.dir(cid).exists():
                            link.unlink()
                            released.append(link.name)
        finally:
            os.close(fd)
        return released

    def _lost_record(self, cid: str) -> bool:
        """Whether *cid* lost its ``state.json`` after it ran: other files are there, its lock
        file too, and no process holds that lock."""
        try:
            entries = os.listdir(self.dir(cid))
        except OSError:
            return False
        ran = any(e != "supervisor.lock" and not e.startswith(".state.json.") for e in entries)
        return ran and "supervisor.lock" in entries and not self.supervisor_alive(cid)

    def _half_created(self, cid: str) -> bool:
        """Whether *cid* is a creation that died before its first record (only meaningful while
        no creation runs): nothing but its lock and a temporary record, and no supervisor."""
        try:
            entries = os.listdir(self.dir(cid))
        except OSError:
            return False
        if "state.json" in entries or not all(
            e == "supervisor.lock" or e.startswith(".state.json.") for e in entries
        ):
            return False
        return not self.supervisor_alive(cid)

    def supervisor_lock(self, cid: str) -> Path:
        """The file whose ``flock`` marks a live supervisor."""
        return self.dir(cid) / "supervisor.lock"

    def supervisor_alive(self, cid: str) -> bool:
        """True while some process holds the container's supervisor lock."""
        return held(self.supervisor_lock(cid))


def warn(damaged: Damaged) -> None:
    """Report a damaged record once per process: one warning line that names the file."""
    if damaged.path not in _warned:
        _warned.add(damaged.path)
        log.warning("record.damaged", file=damaged.path, problem=damaged.problem)
