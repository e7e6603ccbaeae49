"""A container's resource limits, from the spec to the OCI config: ``--ulimit`` (process
rlimits) and the cgroup limits ``--pids-limit``, ``--memory`` and ``--cpus``. They are checked
when the container is created, so no limit is ever dropped silently at start.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Iterable
from typing import Any

from .._state._records import Spec
from .._util._errors import CarrierError

# Docker's --ulimit names -> setrlimit(2) resources
_RLIMITS = {
    "as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}
_UNLIMITED = 2**64 - 1  # RLIM_INFINITY as OCI writes it


def parse_ulimits(items: Iterable[str]) -> list[dict[str, Any]]:
    """``NAME=SOFT[:HARD]`` items (-1: unlimited; HARD defaults to SOFT) as OCI rlimits. A
    container cannot raise a hard limit above ours (that needs CAP_SYS_RESOURCE on the host),
    so such a value is refused here rather than failing at start."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, value = item.partition("=")
        soft_text, _, hard_text = value.partition(":")
        kind = _RLIMITS.get(name)
        if kind is None or not value:
            raise CarrierError(f"invalid --ulimit {item!r}: expected NAME=SOFT[:HARD] with NAME "
                               f"one of {', '.join(sorted(_RLIMITS))}")
        soft, hard = _limit(soft_text, item), _limit(hard_text or soft_text, item)
        if soft > hard:
            raise CarrierError(f"invalid --ulimit {item!r}: the soft limit is above the hard one")
        ours = resource.getrlimit(getattr(resource, kind))[1]
        ours = _UNLIMITED if ours == resource.RLIM_INFINITY else ours
        if hard > ours:
            shown = "unlimited" if ours == _UNLIMITED else str(ours)
            raise CarrierError(f"--ulimit {item}: the hard limit is above this user's ({shown}), "
                               "which a container cannot raise")
        found[kind] = {"type": kind, "hard": hard, "soft": soft}
    return list(found.values())


def _limit(text: str, item: str) -> int:
    if text in ("-1", "unlimited"):
        return _UNLIMITED
    if not text.isdigit():
        raise CarrierError(f"invalid --ulimit {item!r}: limits are numbers or -1 (unlimited)")
    return int(text)


_SIZE = re.compile(r"(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[bkmgt]?)b?", re.IGNORECASE)


def parse_memory(value: int | str) -> int:
    """``--memory``: bytes, or a number with b, k, m, g or t (1024-based, as Docker)."""
    m = _SIZE.fullmatch(str(value).strip())
    if isinstance(value, bool) or m is None:
        raise CarrierError(f"invalid --memory {value!r}: expected a size such as 512m or 1g")
    size = int(float(m["n"]) * 1024 ** "bkmgt".index((m["unit"] or "b").lower()))
    if size < 6 * 1024 * 1024:  # runc's minimum, as Docker's
        raise CarrierError(f"invalid --memory {value!r}: the minimum is 6m")
    return size


def check_limits(spec: Spec) -> None:
    """Normalise ``--pids-limit``, ``--memory`` and ``--cpus`` of *spec*, and refuse them where
    they cannot be enforced: a rootless container here has no cgroup of its own to limit."""
    if spec.pids_limit is not None:
        if isinstance(spec.pids_limit, bool) or not isinstance(spec.pids_limit, int) or \
                spec.pids_limit == 0 or spec.pids_limit < -1:
            raise CarrierError(f"invalid --pids-limit {spec.pids_limit!r}: expected a positive "
                               "number, or -1 (unlimited)")
        if spec.pids_limit == -1:
            spec.pids_limit = None
    if spec.memory is not None:
        spec.memory = parse_memory(spec.memory)
    if spec.cpus is not None:
        if isinstance(spec.cpus, bool) or not isinstance(spec.cpus, int | float) or \
                not 0.01 <= spec.cpus <= (os.cpu_count() or 1):
            raise CarrierError(f"invalid --cpus {spec.cpus!r}: expected a number from 0.01 to "
                               f"this machine's {os.cpu_count() or 1} CPUs")
        spec.cpus = float(spec.cpus)
    given = [o for o, v in (("--pids-limit", spec.pids_limit), ("--memory", spec.memory),
                            ("--cpus", spec.cpus)) if v is not None]
    if given and os.geteuid() != 0:
        raise CarrierError(f"{given[0]} cannot be enforced: a rootless container gets no cgroup "
                           f"of its own here ({_cgroup_reason()}), so the limit would be ignored")
    if given and spec.storage_driver == "fuse-overlayfs":  # see _rootfs.Rootfs.runtime_inside
        raise CarrierError(f"{given[0]} cannot be enforced with the fuse-overlayfs storage "
                           "driver: the runtime then runs inside the container's user namespace, "
                           "where it may not write cgroups (use --storage-driver overlay or copy)")


def _cgroup_reason() -> str:
    """Why a rootless container has no cgroup limits on this host, in a few words."""
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "cgroup v1 or hybrid hierarchy; limits need cgroup v2 delegated to this user"
    return "cgroup v2, but Carrier does not yet place rootless containers in a delegated cgroup"


def resources(spec: Spec) -> dict[str, Any] | None:
    """The OCI ``linux.resources`` for *spec*'s limits (checked by :func:`check_limits`)."""
    res: dict[str, Any] = {}
    if spec.memory is not None:
        res["memory"] = {"limit": int(spec.memory)}
    if spec.pids_limit is not None:
        res["pids"] = {"limit": spec.pids_limit}
    if spec.cpus is not None:
        res["cpu"] = {"quota": round(float(spec.cpus) * 100_000), "period": 100_000}
    return res or None
