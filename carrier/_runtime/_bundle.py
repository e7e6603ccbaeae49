"""The OCI bundle: ``config.json`` (runtime-spec 1.0) plus the container's root filesystem.

The container joins the holder's namespaces by path and gets its own mount and PID namespaces
from the runtime.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._sandbox._holder import Holder
from .._sandbox._idmap import IdRange
from .._state._records import Spec
from .._util._atomic import write_json
from .._util._errors import CarrierError

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # Docker's default set


def parse_env(items: Iterable[str], *, base: Iterable[str] = ()) -> list[str]:
    """Overlay ``KEY=VALUE`` items on *base*. A bare ``KEY`` takes the host's value, if set."""
    merged: dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        merged[key] = value
    for item in items:
        key, sep, value = item.partition("=")
        if not key or any(c.isspace() for c in key):
            raise CarrierError(f"invalid environment variable {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def _ids(ranges: list[IdRange]) -> list[dict[str, int]]:
    return [{"containerID": r.container, "hostID": r.host, "size": r.size} for r in ranges]


def _user(user: str, rootfs: Path) -> dict[str, Any]:
    """Resolve ``uid[:gid]`` or a name from the image's /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")

    def lookup(db: str, key: str) -> tuple[int, int | None]:
        if key.isdigit():
            return int(key), None
        try:
            for line in (rootfs / "etc" / db).read_text().splitlines():
                f = line.split(":")
                if len(f) > 3 and f[0] == key:
                    return int(f[2]), int(f[3]) if db == "passwd" else None
        except (OSError, ValueError):
            pass
        raise CarrierError(f"unable to find user {key}: no matching entries in {db} file")

    uid, primary = lookup("passwd", name or "0")
    gid = lookup("group", group)[0] if group else (primary or 0)
    return {"uid": uid, "gid": gid}


def container_env(spec: Spec) -> list[str]:
    """The main process's environment: the spec's, with PATH and HOSTNAME defaulted."""
    env = list(spec.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={spec.hostname}")
    return env


def process(args: list[str], env: list[str], cwd: str, user: str, rootfs: Path, *,
            terminal: bool = False) -> dict[str, Any]:
    """An OCI ``process`` object: for the container's main process and for ``exec``."""
    return {
        "terminal": terminal,
        "user": _user(user, rootfs),
        "args": args,
        "env": env,
        "cwd": cwd or "/",
        "capabilities": {k: _CAPS for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": True,
    }


def write_bundle(bundle: Path, spec: Spec, holder: Holder, rootfs: Path, *,
                 runtime_inside: bool = False) -> None:
    """Write ``bundle/config.json`` for *spec*, joining *holder*'s namespaces; *rootfs* is where
    this process sees the root filesystem (for user and group names). With *runtime_inside*,
    the runtime runs in the holder's user and mount namespaces already (``_storage``)."""
    env = container_env(spec)
    mount: dict[str, str] = {"type": "mount"}
    if holder.mountns and not runtime_inside:  # the root filesystem is mounted there
        mount["path"] = holder.ns_path("mnt")
    namespaces: list[dict[str, str]] = [{"type": "pid"}, mount]
    namespaces += [{"type": t, "path": holder.ns_path(n)} for t, n in (("uts", "uts"), ("ipc", "ipc"))]
    if holder.netns:
        namespaces.append({"type": "network", "path": holder.ns_path("net")})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
            "/proc/scsi",
        ],
        "readonlyPaths": [
            "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
        ],
    }
    if holder.userns and not runtime_inside:
        namespaces.append({"type": "user", "path": holder.ns_path("user")})
        linux["uidMappings"] = _ids(holder.uid_map)
        linux["gidMappings"] = _ids(holder.gid_map)
    # sysfs may only be mounted by the owner of the network namespace; with the host's network
    # a user namespace cannot, so bind the host's /sys read-only instead.
    sys_mount: dict[str, Any] = (
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]}
        if holder.netns or not holder.userns else
        {"destination": "/sys", "type": "none", "source": "/sys",
         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    )
    pts_opts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not holder.userns or any(r.container <= 5 < r.container + r.size for r in holder.gid_map[1:]):
        pts_opts.append("gid=5")
    config = {
        "ociVersion": "1.0.2",
        "process": process(spec.args, env, spec.cwd, spec.user, rootfs),
        "root": {"path": "rootfs", "readonly": False},
        "hostname": spec.hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": pts_opts},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            sys_mount,
        ],
        "linux": linux,
    }
    write_json(bundle / "config.json", config)
