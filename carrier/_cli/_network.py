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
    """The names of the containers whose spec attaches them to network *name* (any state)."""
    from .._state._records import Containers

    return [r.name for r in Containers(root).all() if r.spec.network == name]


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
