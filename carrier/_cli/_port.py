"""``carrier port``: the published ports of a running container, in ``podman port``'s format."""

from __future__ import annotations

import re

from .._util._errors import CarrierError
from ._common import open_root

_PORT = re.compile(r"^(?P<port>\d{1,5})(?:/(?P<proto>tcp|udp))?$")


def port(container: str, private_port: str | None = None, /) -> int:
    """List the container's published ports (``80/tcp -> 0.0.0.0:8080``), or the host address
    of one container port (``carrier port NAME 80[/tcp]`` prints ``0.0.0.0:8080``).

    A container that does not run publishes nothing, as in Podman.
    """
    from .._state._records import Containers, Status

    wanted: tuple[int, str] | None = None
    if private_port is not None:
        m = _PORT.match(private_port)
        if m is None or not 1 <= int(m["port"]) <= 65535:
            raise CarrierError(f"invalid port {private_port!r}: expected PORT[/tcp|udp]")
        wanted = (int(m["port"]), m["proto"] or "tcp")
    root = open_root()
    found = Containers(root)
    record = found.find(container)
    published = []
    if record.status is Status.RUNNING and found.supervisor_alive(record.id):
        published = (record.network or {}).get("published", [])
    lines = []
    for p in published:
        ip = f"[{p['host_ip']}]" if ":" in str(p["host_ip"]) else str(p["host_ip"])
        where = f"{ip}:{p['host_port']}"
        if wanted is None:
            lines.append(f"{p['container_port']}/{p['proto']} -> {where}")
        elif (p["container_port"], p["proto"]) == wanted:
            lines.append(where)
    if wanted is not None and not lines:
        raise CarrierError(f"failed to find published port \"{wanted[0]}/{wanted[1]}\"")
    for line in lines:
        print(line)
    return 0
