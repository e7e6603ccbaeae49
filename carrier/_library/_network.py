"""Named networks from the library: ``async with carrier.network() as net:`` creates one (the
record ``carrier network create`` stores), containers join it with ``carrier.run(...,
network=net)`` exactly as ``--network NAME`` joins, and leaving the block removes it once its
containers, and the network's own supervisor, are gone."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NewType, final, get_args

import anyio

from .._state._networks import Networks
from .._state._records import Containers
from .._util import _process
from .._util._errors import CarrierError, ConflictError
from .._util._logging import log
from .._util._root import Root
from ._options import NetworkMode

Helper = Literal["auto", "pasta", "slirp4netns"]

NetworkName = NewType("NetworkName", str)
"""The name of a named network, for ``carrier.run(network=carrier.NetworkName("backend"))``:
typed apart from plain strings so that a type checker still flags a misspelt mode
(``network="pasat"``). At run time a plain string that is no mode is taken as a name too."""

END_TIMEOUT = 30.0
"""How long leaving the block waits for the network's supervisor to tear down (a guard)."""


@final
@dataclass(frozen=True)
class Network:
    """A named network made by :func:`carrier.network`; give it to ``carrier.run(...,
    network=net)`` (its name works as well)."""

    name: NetworkName
    """The network's name, as ``carrier network ls`` shows it."""
    subnet: str
    """Its IPv4 subnet in CIDR form (``10.89.0.0/24``)."""
    internal: bool
    """Whether it has no way out (no helper)."""
    root: Path
    """The Carrier root that stores it (containers on it must use the same root)."""


@asynccontextmanager
async def network(name: str | None = None, *, internal: bool = False, subnet: str | None = None,
                  helper: Helper = "auto", labels: Mapping[str, str] | None = None,
                  root: Path | str | None = None) -> AsyncIterator[Network]:
    """Create a named network (as ``carrier network create``) for the block and yield its
    handle; *name* None makes one up (``carrier-`` and 12 hex digits).

    Containers started with ``carrier.run(..., network=net, network_aliases=[...])`` find each
    other by name and alias. Its bridge and helper (*helper*: pasta or slirp4netns; none when
    *internal*) start with its first container and end with its last. Leaving the block waits
    for that, then removes the network; a stopped container still on it (``remove=False``)
    keeps it, with a :class:`ConflictError` (or a logged warning when the block is left by an
    exception, which then propagates unchanged).

    **Cancellation:** the removal runs shielded, as the containers' own clean-up does.
    """
    if helper not in get_args(Helper):
        raise CarrierError(f"invalid helper={helper!r}: choose {', '.join(get_args(Helper))}")
    if labels is not None and not all(isinstance(k, str) and isinstance(v, str)
                                      for k, v in labels.items()):
        raise CarrierError(f"invalid labels={labels!r}: expected a mapping of strings")
    carrier_root = Root.open(root)
    nets = Networks(carrier_root)
    options: dict[str, str] = {} if helper == "auto" else {"helper": helper}
    record = nets.create(name if name is not None else f"carrier-{secrets.token_hex(6)}",
                         subnet=subnet, internal=internal, labels=dict(labels or {}),
                         options=options)
    handle = Network(NetworkName(record.name), record.subnet, record.internal, carrier_root.path)
    failed = True
    try:
        yield handle
        failed = False
    finally:
        with anyio.CancelScope(shield=True):
            await _remove(carrier_root, nets, record.name, raise_conflict=not failed)


async def _remove(root: Root, nets: Networks, name: str, *, raise_conflict: bool) -> None:
    """Remove the record once the network's supervisor has ended (bounded wait), unless a
    container still uses it."""
    for _ in range(3):  # bounded: a container of another process may join meanwhile
        with nets.lock():
            users = _users(root, nets, name)
        if users:
            break
        with anyio.move_on_after(END_TIMEOUT) as waited:
            await _supervisor_gone(nets, name)
        if waited.cancelled_caught:
            message = f"network {name} is kept: its supervisor did not end in {END_TIMEOUT:g} s"
            if raise_conflict:
                raise ConflictError(message)
            log.warning("network.kept", network=name, reason="supervisor still running")
            return
        with nets.lock():
            users = _users(root, nets, name)
            if not users and not nets.supervisor_alive(name):
                nets.remove(name)
                return
    message = (f"network {name} is kept: container(s) {', '.join(users) or '(starting)'} "
               "still use it (remove them, then carrier network rm)")
    if raise_conflict:
        raise ConflictError(message)
    log.warning("network.kept", network=name, containers=users)


def _users(root: Root, nets: Networks, name: str) -> list[str]:
    """The containers on network *name* (call with the lock held): stored ones whose spec
    names it, and attached ones."""
    stored = {r.name for r in Containers(root).all() if r.spec.network == name}
    attached = {m.name for m in nets.members(name).values()}
    return sorted(stored | attached)


async def _supervisor_gone(nets: Networks, name: str) -> None:
    """Until the network's supervisor (started by its first container) has exited: it tears
    the bridge and helper down once the last container has left."""
    recorded = _process.read_pid_file(nets.dir(name) / "supervisor.pid")
    if recorded is None:
        return
    try:
        fd = os.pidfd_open(recorded[0])
    except ProcessLookupError:
        return
    try:
        if _process.same_process(*recorded):  # checked once the pidfd pins the PID
            await anyio.wait_readable(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def for_run(value: object, root: Path | str | None) -> tuple[str | None, Path | str | None]:
    """The network name (or mode) that ``carrier.run``'s *network* means, and the root to
    run in: a :class:`Network`'s own, which a *root* given as well must match."""
    if value is None:
        return None, root
    if isinstance(value, Network):
        if root is not None and os.path.abspath(root) != str(value.root):
            raise CarrierError(f"invalid network={value.name!r}: it belongs to the root "
                               f"{value.root}, not to {root}")
        return value.name, value.root
    modes = ", ".join(get_args(NetworkMode))
    if not isinstance(value, str):
        raise CarrierError(f"invalid network={value!r}: expected a mode ({modes}), a "
                           "network's name or a carrier.Network")
    if value not in get_args(NetworkMode) and not value.startswith("container:") \
            and not Networks(Root.open(root)).exists(value):  # refused before any pull
        raise CarrierError(f"invalid network={value!r}: no such network (the modes are {modes})")
    return value, root
