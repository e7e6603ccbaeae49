"""``carrier volume``: create, list, inspect, remove and prune named volumes, as Podman does."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from .._util._errors import CarrierError
from ._common import each, open_root
from ._format import ago, table

if TYPE_CHECKING:
    from .._util._root import Root


def create(name: str, *, label: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
           ) -> int:
    """Create a named volume (an existing one is an error, as in Podman).

    Parameters
    ----------
    name: str
        The volume's name: [a-zA-Z0-9][a-zA-Z0-9_.-]+.
    label: list[str] | None
        Set a label, KEY=VALUE (repeatable).
    """
    from .._storage._volumes import Volumes, check_name
    from ._settings import parse_pairs

    labels = parse_pairs(label or [], "label")
    volumes = Volumes(open_root())
    with volumes.lock(shared=True):
        if not volumes.create(check_name(name), labels):
            raise CarrierError(f"volume with name {name} already exists")
    print(name)
    return 0


def ls(*, format: str = "table") -> int:
    """List named volumes (--format table, json or a Go template such as '{{.Name}}').

    Parameters
    ----------
    format: str
        table (default), json, or a Go template ('{{.Name}}').
    """
    from .._storage._volumes import Volumes
    from ._template import is_template, render

    volumes = Volumes(open_root())
    found = [volumes.inspect(n) for n in volumes.names()]
    if is_template(format):
        print(render(format, found, headers={"Name": "VOLUME NAME"},
                     keys=("Name", "Driver", "Mountpoint", "CreatedAt", "Labels", "Scope",
                           "Options")), end="")
        return 0
    if format.strip() == "json":
        print(json.dumps(found, indent=2))
        return 0
    table([("DRIVER", "VOLUME NAME", "CREATED"),
           *((v["Driver"], v["Name"], f"{ago(v['CreatedAt'])} ago") for v in found)])
    return 0


def inspect(*names: str,
            format: Annotated[str, Parameter(name=["-f", "--format"])] = "json") -> int:
    """Show volumes as JSON: name, mountpoint on the host, creation time, labels (--format: a
    Go template such as '{{.Mountpoint}}').

    Parameters
    ----------
    format: str
        json (default) or a Go template ('{{.Mountpoint}}').
    """
    from .._storage._volumes import Volumes
    from ._template import is_template, render

    if not names:
        raise CarrierError("inspect needs at least one volume: carrier volume inspect NAME...")
    volumes = Volumes(open_root())
    found = [volumes.inspect(n) for n in names]
    if is_template(format):
        print(render(format, found), end="")
    else:
        print(json.dumps(found, indent=2))
    return 0


def rm(*names: str, force: Annotated[bool, Parameter(name=["-f", "--force"])] = False) -> int:
    """Remove volumes and their data; one a container uses is refused, unless -f, which removes
    those containers first (stopping them), as Podman does.

    Each volume is removed on its own: one that cannot be is reported in one line and the exit
    code is 125.

    Parameters
    ----------
    force: bool
        Remove the containers that use them first (stopping them).
    """
    from .._storage._mounts import remove_unused, volume_users
    from .._storage._volumes import Volumes

    if not names:
        raise CarrierError("rm needs at least one volume: carrier volume rm [-f] NAME...")
    root = open_root()
    volumes = Volumes(root)

    def one(name: str) -> None:
        with volumes.lock(shared=False):
            if force:
                _remove_containers(root, volume_users(root, name))
            remove_unused(root, name)
        print(name)

    return each(names, one)


def prune() -> int:
    """Remove every volume that no container uses (no confirmation asked)."""
    from .._storage._mounts import volume_users
    from .._storage._volumes import Volumes

    root = open_root()
    volumes = Volumes(root)
    with volumes.lock(shared=False):
        for name in volumes.names():
            if not volume_users(root, name):
                volumes.remove(name)
                print(name)
    return 0


def _remove_containers(root: Root, names: list[str]) -> None:
    """``rm -f`` the containers *names* (for ``volume rm -f``)."""
    import anyio

    from .._state._records import Containers
    from .._supervision._control import remove, request_stop

    found = Containers(root)
    for ref in names:
        cid = found.resolve(ref)
        if found.supervisor_alive(cid):
            request_stop(root, cid, ref, 0)
        anyio.run(remove, root, cid)
