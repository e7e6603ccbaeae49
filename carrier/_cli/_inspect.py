"""``carrier inspect``: containers, images, volumes and networks as JSON in Podman's field
names, or through a Go template (``--format '{{.State.Status}}'``)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import Parameter

from .._util._errors import CarrierError, NotFoundError
from ._common import each, open_root
from ._template import is_template, render

if TYPE_CHECKING:
    from .._images._store import Image
    from .._state._records import Record
    from .._util._root import Root

Kind = Literal["all", "container", "image", "volume", "network"]


def inspect(
    *names: str,
    type: Annotated[Kind, Parameter(name=["-t", "--type"])] = "all",
    format: Annotated[str, Parameter(name=["-f", "--format"])] = "json",
) -> int:
    """Show containers, images, volumes or networks as JSON, with Podman's field names.

    Parameters
    ----------
    names: str
        Container, image, volume or network names (or ids); with --type all, the first kind
        that has the name wins, in that order.
    type: Kind
        Look only among this kind of object.
    format: str
        json (the default) or a Go template, such as '{{.State.Status}}' or '{{json .Config}}'.
    """
    if not names:
        raise CarrierError("inspect needs at least one name: carrier inspect NAME...")
    root = open_root()
    template = is_template(format)
    found: list[dict[str, Any]] = []

    def one(name: str) -> None:
        found.append(_lookup(root, name, type, template))

    code = each(names, one)
    if template:
        print(render(format, found), end="")
    else:
        print(json.dumps(found, indent=4))
    return code


def _lookup(root: Root, name: str, kind: Kind, template: bool) -> dict[str, Any]:
    """The inspect data of *name*, of *kind* or the first kind that has it (a network's with Go
    field names when it is for a *template*)."""
    from .._images._store import Store
    from .._state._networks import Networks
    from .._state._records import Containers
    from .._storage._volumes import Volumes

    finders: dict[str, Callable[[], dict[str, Any]]] = {
        "container": lambda: container_fields(root, Containers(root).find(name)),
        "image": lambda: image_fields(Store(root).get(name)),
        "volume": lambda: Volumes(root).inspect(name),
        "network": lambda: _network(Networks(root).get(name).inspect(), template),
    }
    for what, find in finders.items():
        if kind not in ("all", what):
            continue
        try:
            return find()
        except NotFoundError:
            continue
    raise NotFoundError(f"no such {'object' if kind == 'all' else kind}: {name}")


def container_fields(root: Root, r: Record) -> dict[str, Any]:
    """A container in ``podman inspect``'s shape (the fields Carrier has)."""
    from .._state._records import Containers, Status
    from ._pause import is_paused

    running = r.status is Status.RUNNING
    paused = running and r.container_pid is not None and is_paused(r.container_pid)
    return {
        "Id": r.id, "Created": r.created, "Path": r.spec.args[0] if r.spec.args else "",
        "Args": r.spec.args[1:],
        "State": {"Status": "paused" if paused else str(r.status), "Running": running,
                  "Paused": paused,
                  "Restarting": False, "OOMKilled": False, "Dead": False,
                  "Pid": r.container_pid if running and r.container_pid else 0,
                  "ExitCode": r.exit_code or 0, "Error": r.reason or "",
                  "StartedAt": r.started or "", "FinishedAt": r.finished or "",
                  "Health": r.health or {}},
        "Image": r.spec.image_id, "ImageName": r.spec.image, "Name": r.name,
        "RestartCount": r.restarts, "Driver": r.spec.storage_driver, "OCIRuntime": r.spec.runtime,
        "Config": {"Hostname": r.spec.hostname, "User": r.spec.user, "Env": r.spec.env,
                   "Cmd": r.spec.args, "Image": r.spec.image, "WorkingDir": r.spec.cwd,
                   "Labels": dict(r.spec.labels), "Tty": r.spec.tty,
                   "OpenStdin": r.spec.interactive, "StdinOnce": False,
                   "StopTimeout": r.spec.stop_timeout},
        "HostConfig": {"NetworkMode": r.spec.network, "PortBindings": r.spec.ports,
                       "Binds": r.spec.volumes, "ReadonlyRootfs": r.spec.read_only,
                       "AutoRemove": r.spec.remove, "RestartPolicy": {"Name": r.spec.restart},
                       "Init": r.spec.init, **_security_fields(r)},
        "NetworkSettings": {"Networks": _networks(r) if running else {}},
        "Dir": str(Containers(root).dir(r.id)),
    }


def _networks(r: Record) -> dict[str, Any]:
    """``NetworkSettings.Networks`` of a running container: its named networks, the one it
    was started on and those connected since (Podman's fields where Carrier has them)."""
    from .._network._options import MODES

    info = r.network or {}
    if r.spec.network in MODES or r.spec.network.startswith("container:"):
        return {}
    first = list(dict.fromkeys(filter(None, [r.spec.hostname, *r.spec.network_aliases])))
    found = {r.spec.network: {**info, "aliases": first},
             **(info.get("connected") or {})}
    shown = {}
    for name, net in found.items():
        address, _, prefix = str(net.get("address") or "").partition("/")
        shown[name] = {"IPAddress": address, "IPPrefixLen": int(prefix or 0),
                       "Gateway": net.get("gateway") or "", "Aliases": list(net.get("aliases") or []),
                       "InterfaceName": net.get("interface") or ""}
    return shown


def _security_fields(r: Record) -> dict[str, Any]:
    """``HostConfig``'s capabilities, security options and limits, in Podman's names, from the
    record: CapAdd/CapDrop against Docker's default set (as Podman 4.3 shows them), Ulimits
    with -1 for unlimited, 0 for a limit not set."""
    from .._runtime._caps import inspect_delta, resolve
    from .._runtime._limits import parse_ulimits
    from .._util._errors import CarrierError

    spec = r.spec
    try:
        cap_add, cap_drop = inspect_delta(resolve(spec.cap_add, spec.cap_drop, spec.privileged),
                                          spec.privileged)
    except CarrierError:  # a record from elsewhere with a capability this kernel lacks
        cap_add, cap_drop = [], []
    try:
        limits = parse_ulimits(spec.ulimit)
    except CarrierError:  # our own hard limits were lowered since create
        limits = []

    def shown(value: int) -> int:
        return -1 if value == 2**64 - 1 else value

    return {"CapAdd": cap_add, "CapDrop": cap_drop, "Privileged": spec.privileged,
            "SecurityOpt": list(spec.security_opt),
            "Ulimits": [{"Name": u["type"], "Soft": shown(u["soft"]), "Hard": shown(u["hard"])}
                        for u in limits],
            "PidsLimit": spec.pids_limit or 0, "Memory": spec.memory or 0,
            "NanoCpus": round(spec.cpus * 1e9) if spec.cpus else 0}


def image_fields(image: Image) -> dict[str, Any]:
    """An image in ``podman image inspect``'s shape."""
    config = image.config
    return {
        "Id": image.id.removeprefix("sha256:"), "RepoTags": list(image.names),
        "Created": image.created, "Size": image.size, "Config": image.run_config,
        "Labels": image.run_config.get("Labels") or {},
        "Architecture": config.get("architecture", ""), "Os": config.get("os", ""),
        "Author": config.get("author", ""),
        "RootFS": {"Type": "layers", "Layers": list(image.diff_ids)},
    }


def _network(data: dict[str, Any], template: bool) -> dict[str, Any]:
    return network_fields(data) if template else data


_GO_NAMES = {"id": "ID", "dns_enabled": "DNSEnabled", "ipv6_enabled": "IPv6Enabled"}


def network_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A network's inspect data with the Go field names a Podman template uses (``.Name``,
    ``.Subnets``), where its JSON has netavark's lower-case keys."""
    def go(key: str) -> str:
        return _GO_NAMES.get(key) or re.sub(r"(?:^|_)(.)", lambda m: m.group(1).upper(), key)

    def convert(value: Any, keep_keys: bool = False) -> Any:
        if isinstance(value, dict):
            return {k if keep_keys else go(k): convert(v, k in ("labels", "options"))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [convert(v) for v in value]
        return value

    return dict(convert(data))
