"""Named networks on disk: one record per network, and the run state of a network in use.

``networks/<name>/network.json`` is the record (written atomically, versioned), created by
``carrier network create`` with no process behind it, as Podman does. While containers are
attached, the same directory holds the run state: ``members.json`` (who is attached, with which
address and names), ``run.json`` (the network supervisor and its holder), ``supervisor.lock``
(held for life by the network supervisor) and ``members.lock`` (held shared by every attached
container's supervisor, so that an exclusive lock means "nobody is left", also after SIGKILL).
Every change to the records and to membership happens under ``networks/.lock``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._util._atomic import held, locked, write_json
from .._util._errors import CarrierError, NotFoundError
from .._util._root import Root
from ._records import now

NETWORK_VERSION = 1
RESERVED = ("auto", "pasta", "slirp4netns", "none", "host", "bridge", "default")
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")
DEFAULT_POOL = ipaddress.IPv4Network("10.89.0.0/16")


@dataclass
class NetworkRecord:
    """One named network: what ``network inspect`` shows (Podman's field names)."""

    name: str
    id: str
    subnet: str
    gateway: str
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)  # helper=pasta|slirp4netns
    driver: str = "bridge"
    created: str = field(default_factory=now)
    version: int = NETWORK_VERSION

    def to_json(self) -> dict[str, Any]:
        """The record as stored."""
        return asdict(self)

    def inspect(self) -> dict[str, Any]:
        """Podman's ``network inspect`` shape."""
        return {"name": self.name, "id": self.id, "driver": self.driver,
                "subnets": [{"subnet": self.subnet, "gateway": self.gateway}],
                "internal": self.internal, "labels": dict(self.labels), "options": dict(self.options),
                "created": self.created}

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The subnet as an address object."""
        return ipaddress.IPv4Network(self.subnet)

    @classmethod
    def from_json(cls, data: Any) -> NetworkRecord:
        """Rebuild a record; unknown fields of a newer Carrier are ignored."""
        if not isinstance(data, dict) or data.get("version", 1) > NETWORK_VERSION + 100:
            raise CarrierError("damaged network record")
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class Member:
    """One attached container, as the hosts files and the address allocation see it."""

    id: str
    name: str
    address: str
    aliases: list[str] = field(default_factory=list)
    host_loopback: bool = False
    hosts_file: str = ""  # the container's /etc/hosts as seen from the host, rewritten in place


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """An IPv4 subnet with room for a gateway and containers (/8 to /29)."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError:
        raise CarrierError(f"invalid --subnet {text!r}: expected an IPv4 CIDR such as 10.89.5.0/24") from None
    if not 8 <= net.prefixlen <= 29:
        raise CarrierError(f"invalid --subnet {text!r}: the prefix must be /8 to /29")
    return net


def _first_free(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first 10.89.N.0/24 that overlaps no other network."""
    for net in DEFAULT_POOL.subnets(new_prefix=24):
        if not any(net.overlaps(t) for t in taken):
            return net
    raise CarrierError("no free subnet left in 10.89.0.0/16: give --subnet")


class Networks:
    """The network records under one Carrier root."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.base = root.path / "networks"
        self.base.mkdir(mode=0o700, exist_ok=True)
        self.lock_path = self.base / ".lock"

    def dir(self, name: str) -> Path:
        """The network's directory (record and run state)."""
        return self.base / name

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise every change to records and membership."""
        with locked(self.lock_path):
            yield

    def names(self) -> list[str]:
        """The names of all networks, sorted."""
        return sorted(p.parent.name for p in self.base.glob("*/network.json"))

    def get(self, name: str) -> NetworkRecord:
        """The record of network *name*."""
        try:
            data = json.loads((self.dir(name) / "network.json").read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"no such network: {name}") from None
        except (OSError, ValueError) as e:
            raise CarrierError(f"network {name}: damaged record: {e}") from None
        return NetworkRecord.from_json(data)

    def exists(self, name: str) -> bool:
        """Whether a network of that name exists."""
        return (self.dir(name) / "network.json").exists()

    def all(self) -> list[NetworkRecord]:
        """Every readable record."""
        found = []
        for name in self.names():
            with contextlib.suppress(CarrierError):
                found.append(self.get(name))
        return found

    def create(self, name: str, *, subnet: str | None = None, internal: bool = False,
               labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None) -> NetworkRecord:
        """Store a new network record; refuse a bad or taken name and overlapping subnets."""
        if not _NAME_RE.match(name) or name in RESERVED:
            raise CarrierError(f"invalid network name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]* "
                               f"(not {', '.join(RESERVED)})")
        wanted = parse_subnet(subnet) if subnet is not None else None
        with self.lock():
            if self.exists(name):
                raise CarrierError(f"network {name} already exists")
            taken = [r.network for r in self.all()]
            if wanted is not None:
                for other in taken:
                    if wanted.overlaps(other):
                        raise CarrierError(f"subnet {wanted} overlaps {other} of another network")
                net = wanted
            else:
                net = _first_free(taken)
            record = NetworkRecord(name=name, id=secrets.token_hex(32), subnet=str(net),
                                   gateway=str(net.network_address + 1), internal=internal,
                                   labels=dict(labels or {}), options=dict(options or {}))
            d = self.dir(name)
            d.mkdir(mode=0o700, exist_ok=True)
            try:
                write_json(d / "network.json", record.to_json())
            except BaseException:
                shutil.rmtree(d, ignore_errors=True)
                raise
        return record

    def remove(self, name: str) -> None:
        """Remove the record; refused while a container is attached (the caller checks
        membership first with the lock held, see :meth:`members`)."""
        shutil.rmtree(self.dir(name), ignore_errors=True)

    # -- run state (call with :meth:`lock` held) --

    def members(self, name: str) -> dict[str, Member]:
        """The attached containers whose supervisors are alive (dead ones are dropped and the
        file rewritten: the reconcile of a killed container supervisor)."""
        path = self.dir(name) / "members.json"
        try:
            raw = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError):
            return {}
        members = {cid: Member(**m) for cid, m in raw.items()}
        alive = {cid: m for cid, m in members.items() if self._supervised(cid)}
        if len(alive) != len(members):
            self.save_members(name, alive)
        return alive

    def save_members(self, name: str, members: dict[str, Member]) -> None:
        """Write the membership atomically (removed when empty)."""
        path = self.dir(name) / "members.json"
        if members:
            write_json(path, {cid: asdict(m) for cid, m in members.items()})
        else:
            path.unlink(missing_ok=True)

    def _supervised(self, cid: str) -> bool:
        """Whether container *cid*'s supervisor is alive (it holds its lock)."""
        return held(self.root.containers / cid / "supervisor.lock")

    def supervisor_alive(self, name: str) -> bool:
        """Whether the network's supervisor runs (it holds ``supervisor.lock`` for life)."""
        return held(self.dir(name) / "supervisor.lock")

    def run_state(self, name: str) -> dict[str, Any] | None:
        """``run.json`` of a running network (its supervisor, holder and helper), or None."""
        try:
            data = json.loads((self.dir(name) / "run.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None
