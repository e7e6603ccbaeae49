"""The container commands: ``ps``, ``stop``, ``rm``, ``logs``, ``info`` and ``events``."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import Parameter

from .._util._durations import parse_duration
from .._util._errors import CarrierError, ConflictError
from ._common import each, open_root
from ._format import ago, table
from ._template import is_template, render

if TYPE_CHECKING:
    from .._state._records import Containers, Record
    from .._state._schema import Damaged


def ps(
    *,
    all: Annotated[bool, Parameter(name=["-a", "--all"])] = False,
    format: str = "table",
    quiet: Annotated[bool, Parameter(name=["-q", "--quiet"])] = False,
    no_trunc: Annotated[bool, Parameter(name=["--no-trunc"])] = False,
    last: Annotated[int, Parameter(name=["-n", "--last"])] = -1,
    latest: Annotated[bool, Parameter(name=["-l", "--latest"])] = False,
    filter: Annotated[list[str] | None, Parameter(name=["-f", "--filter"],
                                                  consume_multiple=False)] = None,
) -> int:
    """List containers (running ones, or all with -a; -n N: the N last created, -l: the last
    one; --filter KEY=VALUE: name, id, label, status, ancestor, as Podman takes them;
    --format table, json or a Go template such as '{{.Names}}' or 'table {{.ID}}\\t{{.Status}}').

    Parameters
    ----------
    all: bool
        Every container, not only running ones.
    format: str
        table (default), json, or a Go template ('{{.Names}}', 'table {{.ID}}\\t{{.Status}}').
    quiet: bool
        Only the ids.
    no_trunc: bool
        Full ids and commands.
    last: int
        The N containers created last (all states).
    latest: bool
        The container created last.
    filter: list[str] | None
        KEY=VALUE: name, id, label, status, ancestor (repeatable).
    """
    from .._state._records import Containers, Status
    from ._psfilter import parse

    if last < -1:
        raise CarrierError(f"invalid --last {last}: a number of containers")
    if latest and last >= 0:
        raise CarrierError("--last and --latest are mutually exclusive")
    matches, keys = parse(filter or [])
    if latest:
        last = 1
    every = all or last > 0 or "status" in keys  # as Podman: these look at every state
    found = Containers(open_root())
    records, damaged = found.scan()
    records = [r for r in records if (every or r.status is Status.RUNNING) and matches(r)]
    if last > 0:
        records = sorted(records, key=lambda r: r.created, reverse=True)[:last]
    # A damaged record is listed with what could be read of it (rm -f removes it).
    broken = ([_damaged_summary(found, cid, d) for cid, d in damaged.items()]
              if all and not keys and last <= 0 else [])
    if quiet:
        for cid in [r.id for r in records] + [b["Id"] for b in broken]:
            print(cid if no_trunc else cid[:12])
        return 0
    if format.strip() == "json":
        print(json.dumps([_summary(r) for r in records] + broken, indent=2))
        return 0
    if is_template(format):
        items = [_fields(r, no_trunc) for r in records]
        print(render(format, items, headers=PS_HEADERS, keys=PS_KEYS), end="")
        return 0
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for r in records:
        cmd = " ".join(r.spec.args)
        cmd = cmd if no_trunc or len(cmd) <= 17 else cmd[:17] + "..."
        rows.append((r.id if no_trunc else r.id[:12], r.spec.image, f'"{cmd}"',
                     f"{ago(r.created)} ago", _status_text(r), r.name))
    for b in broken:
        rows.append((b["Id"] if no_trunc else b["Id"][:12], b["Image"] or "?", '""', "?",
                     b["Status"], b["Names"][0]))
    table(rows)
    return 0


def _damaged_summary(found: Containers, cid: str, damaged: Damaged) -> dict[str, Any]:
    spec = damaged.salvage.get("spec") or {}
    name = found.name_of(cid) or damaged.salvage.get("name") or cid[:12]
    return {
        "Id": cid, "Names": [name], "Image": spec.get("image"), "ImageID": spec.get("image_id"),
        "Command": spec.get("args"), "Created": damaged.salvage.get("created"),
        "State": "damaged", "Status": "Damaged (state.json)", "ExitCode": None,
        "Reason": str(damaged), "StartedAt": None, "FinishedAt": None,
    }


def _status_text(r: Record) -> str:
    from .._state._records import Status

    if r.status is Status.RUNNING:
        from ._pause import is_paused

        if r.container_pid is not None and is_paused(r.container_pid):
            return "Paused"
        health = (r.health or {}).get("status")
        return f"Up {ago(r.started)}" + (f" ({health})" if health else "")
    if r.status is Status.EXITED:
        return f"Exited ({r.exit_code}) {ago(r.finished)} ago"
    return "Created"


PS_HEADERS = {"ID": "CONTAINER ID", "RunningFor": "CREATED", "Names": "NAMES"}
PS_KEYS = ("ID", "Image", "ImageID", "Command", "CreatedAt", "RunningFor", "Status", "State",
           "Names", "Labels", "ExitCode", "StartedAt", "Exited", "Ports")


def _fields(r: Record, no_trunc: bool) -> dict[str, Any]:
    """What a ``ps --format`` template sees of *r*: Podman's field names and kinds (``.Names``
    is the name, ``.Command`` the command line)."""
    from .._state._records import Status

    values = [r.id if no_trunc else r.id[:12], r.spec.image, r.spec.image_id,
              " ".join(r.spec.args), r.created, f"{ago(r.created)} ago", _status_text(r),
              str(r.status), r.name, dict(r.spec.labels), r.exit_code or 0, r.started or "",
              r.status is Status.EXITED, ", ".join(r.spec.ports)]
    return dict(zip(PS_KEYS, values, strict=True))


def _summary(r: Record) -> dict[str, Any]:
    return {
        "Id": r.id, "Names": [r.name], "Image": r.spec.image, "ImageID": r.spec.image_id,
        "Command": r.spec.args, "Created": r.created, "State": str(r.status),
        "Status": _status_text(r), "ExitCode": r.exit_code, "Reason": r.reason,
        "Labels": r.spec.labels,
        "StartedAt": r.started, "FinishedAt": r.finished,
    }


def stop(
    *containers: str,
    time: Annotated[str | None, Parameter(name=["-t", "--time"])] = None,
) -> int:
    """Stop containers: SIGTERM, then SIGKILL after the timeout (-t: 10s, 500ms, or seconds).

    Each container is looked up before any is stopped.

    Parameters
    ----------
    time: str | None
        Seconds between SIGTERM and SIGKILL (default: the container's stop timeout).
    """
    from .._state._records import Containers
    from .._supervision._control import request_stop

    if not containers:
        raise CarrierError("stop needs at least one container: carrier stop NAME...")
    timeout = parse_duration(time, "-t/--time") if time is not None else None
    root = open_root()
    found = Containers(root)
    ids = [found.resolve(ref) for ref in containers]
    for ref, cid in zip(containers, ids, strict=True):
        if found.supervisor_alive(cid):  # running, starting or between restarts
            request_stop(root, cid, ref, timeout, _stop_timeout(found, cid))
        print(ref)
    return 0


def _stop_timeout(found: Containers, cid: str) -> float:
    """The container's own stop timeout, or Docker's 10 s when its record cannot be read."""
    from .._state._schema import Damaged
    from .._util._errors import NotFoundError

    try:
        return found.load(cid).spec.stop_timeout
    except Damaged as d:
        timeout = (d.salvage.get("spec") or {}).get("stop_timeout", 10.0)
        return float(timeout)
    except NotFoundError:
        return 10.0


def rm(
    *containers: str,
    force: Annotated[bool, Parameter(name=["-f", "--force"])] = False,
) -> int:
    """Remove containers (-f also kills running ones).

    Each container is removed on its own, as Docker does: one that is missing (or, without -f,
    running) is reported in one line and the others are still removed; the exit code is 125
    if any could not be. A container is removed only once none of its processes lives; a
    damaged record too.

    Parameters
    ----------
    force: bool
        Kill and remove running containers too.
    """
    import anyio

    from .._state._records import Containers
    from .._supervision._control import remove, request_stop

    if not containers:
        raise CarrierError("rm needs at least one container: carrier rm [-f] NAME...")
    root = open_root()
    found = Containers(root)

    def one(ref: str) -> None:
        cid = found.resolve(ref)
        if found.supervisor_alive(cid):
            if not force:
                raise ConflictError(f"cannot remove container {ref}: it is running "
                                    "(stop it first or use -f)")
            request_stop(root, cid, ref, 0)
        anyio.run(remove, root, cid)
        print(ref)

    return each(containers, one)


def logs(
    container: str,
    *,
    follow: Annotated[bool, Parameter(name=["-f", "--follow"])] = False,
    tail: Annotated[int, Parameter(name=["-n", "--tail"])] = -1,
    timestamps: Annotated[bool, Parameter(name=["-t", "--timestamps"])] = False,
    since: str | None = None,
    until: str | None = None,
) -> int:
    """Print a container's output: its stdout on stdout, its stderr on stderr (--tail N: the
    last N lines; -t: each line's time first; --since/--until: RFC 3339, Unix seconds or a
    duration such as 10m; -f: keep following until the container's supervisor has ended).

    Parameters
    ----------
    follow: bool
        Keep printing as the container writes, until it ends.
    tail: int
        Only the last N lines (-1: all).
    timestamps: bool
        Each line with its time.
    since: str | None
        Only lines since a time: 10m, 1h30m, or an RFC 3339 date.
    until: str | None
        Only lines before a time: 10m, or an RFC 3339 date.
    """
    import time

    from .._state._records import Containers
    from .._supervision._logrecords import parse_time
    from ._logfile import Printer, show

    if tail < -1:
        raise CarrierError(f"invalid --tail {tail}: a number of lines, or -1 for all")
    now = time.time_ns()
    printer = Printer(sys.stdout.buffer, sys.stderr.buffer, timestamps,
                      parse_time(since, "--since", now) if since is not None else None,
                      parse_time(until, "--until", now) if until is not None else None)
    root = open_root()
    record = Containers(root).find(container)
    show(Containers(root).dir(record.id), printer, tail=tail, follow=follow)
    return 0


def info(container: str | None = None, *, format: Literal["text", "json"] = "text") -> int:
    """Show everything Carrier knows about a container (JSON), or, with no container, about this
    machine: storage driver, runtime, network helper.

    Parameters
    ----------
    format: str
        text or json.
    """
    from .._state._records import Containers

    if container is None:
        from ._images import system_info

        return system_info(format=format)
    root = open_root()
    record = Containers(root).find(container)
    data = record.to_json()
    data["Dir"] = str(Containers(root).dir(record.id))
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0


def events(
    *,
    format: Literal["table", "json"] = "table",
    follow: Annotated[bool, Parameter(name=["-f", "--follow"])] = False,
) -> int:
    """Show lifecycle events from every supervisor of this Carrier root (-f: keep following).

    Parameters
    ----------
    format: str
        text or json.
    follow: bool
        Keep printing events as they happen.
    """
    from .._supervision import _events
    from .._util._root import Root

    root = Root.open()
    for event in _events.stream(root.path, follow=follow):
        if format == "json":
            print(json.dumps(event, sort_keys=True), flush=True)
        else:
            stamp = dt.datetime.fromtimestamp(event["time"], dt.UTC).isoformat(timespec="milliseconds")
            attrs = " ".join(f"{k}={v}" for k, v in sorted(event.items())
                             if k not in ("time", "id", "name", "type"))
            print(f"{stamp} {event['type']:<13} {event['name']} ({event['id'][:12]}) {attrs}",
                  flush=True)
    return 0
