"""``carrier network``: named networks (create, ls, inspect, rm, prune, as Podman does) and the
machine's readiness for rootless networking (check)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from .._util._errors import CarrierError, ConflictError
from ._common import open_root
from ._format import table

if TYPE_CHECKING:
    from .._util._root import Root


def check() -> int:
    """Check this machine for rootless networking and say how to fix what is missing."""
    from .._network._doctor import check as run_check

    return run_check()


def create(name: str, *, subnet: str | None = None, internal: bool = False,
           label: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
           opt: Annotated[list[str] | None, Parameter(name=["-o", "--opt"], consume_multiple=False)] = None,
           ) -> int:
    """Create a named network: a record only; its bridge and helper start with its first
    container.

    Parameters
    ----------
    name: str
        The network's name: [a-zA-Z0-9][a-zA-Z0-9_.-]*.
    subnet: str | None
        IPv4 subnet in CIDR form (default: the first free 10.89.N.0/24).
    internal: bool
        No way out: no helper, no route beyond the network, no outside DNS.
    label: list[str] | None
        Set a label, KEY=VALUE (repeatable).
    opt: list[str] | None
        Driver option: helper=auto|pasta|slirp4netns (repeatable).
    """
    from .._state._networks import Networks
    from ._settings import parse_pairs

    labels = parse_pairs(label or [], "label")
    options = parse_pairs(opt or [], "--opt")
    for key, value in options.items():
        if key != "helper" or value not in ("auto", "pasta", "slirp4netns"):
            raise CarrierError(f"invalid --opt {key}={value}: expected helper=auto|pasta|slirp4netns")
    record = Networks(open_root()).create(name, subnet=subnet, internal=internal, labels=labels,
                                          options=options)
    print(record.name)
    return 0


def ls(*, quiet: Annotated[bool, Parameter(name=["-q", "--quiet"])] = False,
       format: str = "table") -> int:
    """List named networks (--format table, json or a Go template such as '{{.Name}}').

    Parameters
    ----------
    quiet: bool
        Only the names.
    format: str
        table (default), json, or a Go template ('{{.Name}}').
    """
    from .._state._networks import Networks
    from ._inspect import network_fields
    from ._template import is_template, render

    found = Networks(open_root()).all()
    if quiet:
        for r in found:
            print(r.name)
        return 0
    if format.strip() == "json":
        print(json.dumps([r.inspect() for r in found], indent=2))
        return 0
    if is_template(format):
        items = [network_fields(r.inspect()) for r in found]
        print(render(format, items, headers={"ID": "NETWORK ID"},
                     keys=("Name", "ID", "Driver", "Subnets", "Internal", "Labels", "Options",
                           "Created")), end="")
        return 0
    table([("NETWORK ID", "NAME", "DRIVER", "SUBNET", "INTERNAL"),
           *((r.id[:12], r.name, r.driver, r.subnet, str(r.internal).lower()) for r in found)])
    return 0


def inspect(*names: str,
            format: Annotated[str, Parameter(name=["-f", "--format"])] = "json") -> int:
    """Show networks as JSON, with Podman's field names (--format: a Go template over Podman's
    Go names, such as '{{.Name}} {{range .Subnets}}{{.Subnet}}{{end}}').

    Parameters
    ----------
    format: str
        json (default) or a Go template ('{{.Name}} {{range .Subnets}}{{.Subnet}}{{end}}').
    """
    from .._state._networks import Networks
    from ._inspect import network_fields
    from ._template import is_template, render

    if not names:
        raise CarrierError("inspect needs at least one network: carrier network inspect NAME...")
    nets = Networks(open_root())
    found = [nets.get(n).inspect() for n in names]
    if is_template(format):
        print(render(format, [network_fields(d) for d in found]), end="")
    else:
        print(json.dumps(found, indent=2))
    return 0


def _users(root: Root, name: str) -> list[str]:
    """The names of the containers whose spec attaches them to network *name* (any state), or
    that are connected to it now (``network connect``)."""
    from .._state._records import Containers

    return [r.name for r in Containers(root).all()
            if r.spec.network == name or name in ((r.network or {}).get("connected") or {})]


def rm(*names: str, force: Annotated[bool, Parameter(name=["-f", "--force"])] = False) -> int:
    """Remove networks; one a container uses is refused, unless -f, which removes those
    containers first (stopping them), as Podman does.

    Parameters
    ----------
    force: bool
        Remove the containers that use them first (stopping them).
    """
    from .._state._networks import Networks
    from ._volumes import _remove_containers

    if not names:
        raise CarrierError("rm needs at least one network: carrier network rm [-f] NAME...")
    root = open_root()
    nets = Networks(root)
    failed = False
    for name in names:
        try:
            nets.get(name)
            users = _users(root, name)
            if users and force:
                _remove_containers(root, users)
                users = _users(root, name)
            with nets.lock():
                if users or nets.members(name):
                    raise ConflictError(f"network {name} is being used by the following "
                                        f"container(s): {', '.join(users)} (remove them first "
                                        "or use -f)")
                nets.remove(name)
        except CarrierError as e:
            print(f"carrier: {e}", file=sys.stderr)
            failed = True
            continue
        print(name)
    return 125 if failed else 0


def prune() -> int:
    """Remove every network that no container uses (no confirmation asked)."""
    from .._state._networks import Networks

    root = open_root()
    nets = Networks(root)
    for record in nets.all():
        with nets.lock():
            if not _users(root, record.name) and not nets.members(record.name):
                nets.remove(record.name)
                print(record.name)
    return 0


def _running_on_named(root: Root, network: str, container: str) -> tuple[str, dict[str, object]]:
    """Check *network* and *container* for connect/disconnect: both exist, the container runs,
    on a named network of its own; its id and its connected networks (name: info)."""
    from .._network._options import MODES
    from .._state._networks import Networks
    from .._state._records import Containers, Status

    Networks(root).get(network)
    containers = Containers(root)
    record = containers.load(containers.resolve(container))
    mode = record.spec.network
    if mode in MODES or mode.startswith("container:"):
        raise CarrierError(f"container {record.name} has no named network (--network {mode}): "
                           "only a container started on a named network can be connected to "
                           "another")
    if record.status is not Status.RUNNING:
        raise CarrierError(f"container {record.name} is not running: start it first (a "
                           "connection lasts while it runs)")
    connected = (record.network or {}).get("connected") or {}
    return record.id, {mode: None, **connected}


def _ask_supervisor(root: Root, cid: str, name: str, request: dict[str, object]) -> None:
    """Send a connect or disconnect to the container's supervisor; a refusal is raised."""
    from .._state._records import Containers
    from .._supervision._control import network_request

    if network_request(Containers(root).dir(cid), request) is None:
        raise CarrierError(f"container {name} is not running")


def connect(network: str, container: str, *,
            alias: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
            ip: str | None = None) -> int:
    """Connect a running container, started on a named network, to one more network: an
    ethN interface on its bridge, no second default route.

    Parameters
    ----------
    network: str
        The network to join.
    container: str
        The container's name or id.
    alias: list[str] | None
        One more name the container is found by on this network (repeatable).
    ip: str | None
        The container's IPv4 address on this network (default: the next free one).
    """
    from .._network._options import check_hostname
    from .._supervision._netgroup import check_address

    root = open_root()
    aliases = list(alias or [])
    for name in aliases:
        check_hostname(name, "--alias")
    cid, connected = _running_on_named(root, network, container)
    if network in connected:
        raise CarrierError(f"container {container} is already connected to network {network}")
    if ip is not None:
        check_address(root, network, ip)
    _ask_supervisor(root, cid, container,
                    {"connect": {"network": network, "aliases": aliases, "ip": ip}})
    return 0


def disconnect(network: str, container: str, *,
               force: Annotated[bool, Parameter(name=["-f", "--force"])] = False) -> int:
    """Disconnect a running container from a network it was connected to (not from the one it
    was started on).

    Parameters
    ----------
    network: str
        The network to leave.
    container: str
        The container's name or id.
    force: bool
        Accepted as Podman does; a running container is always disconnected at once.
    """
    root = open_root()
    cid, connected = _running_on_named(root, network, container)
    if network not in connected:
        raise CarrierError(f"container {container} is not connected to network {network}")
    _ask_supervisor(root, cid, container, {"disconnect": {"network": network}})
    return 0
