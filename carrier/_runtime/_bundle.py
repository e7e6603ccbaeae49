"""The OCI bundle: ``config.json`` (runtime-spec 1.0) plus the container's root filesystem.

The container joins the holder's namespaces by path and gets its own mount and PID namespaces
from the runtime.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._sandbox._holder import Holder
from .._sandbox._idmap import IdRange
from .._state._records import Spec
from .._util._atomic import write_json
from .._util._errors import CarrierError
from ._caps import for_non_root
from ._devices import host_devices
from ._limits import resources
from ._security import process_security, seccomp

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


INIT_PATH = "/run/carrier-init"
"""Where ``--init``'s catatonit is bound, read-only, in the container (Podman: /run/podman-init)."""


def init_binary() -> str:
    """The host's catatonit, found on PATH, for ``--init``; one clear line when it is missing."""
    found = shutil.which("catatonit")
    if found is None:
        raise CarrierError("--init needs catatonit, which is not on PATH (Debian: apt install "
                           "catatonit)")
    return os.path.realpath(found)


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


def _entries(text: str | None) -> list[list[str]]:
    """The lines of an /etc/passwd or /etc/group text, split into fields."""
    return [f for f in (line.split(":") for line in (text or "").splitlines()) if len(f) > 3]


def _read(rootfs: Path, db: str) -> str | None:
    try:
        return (rootfs / "etc" / db).read_text(errors="replace")
    except OSError:
        return None


def _user(user: str, rootfs: Path) -> dict[str, Any]:
    """The OCI ``user`` object for ``-u`` in the root filesystem at *rootfs*."""
    return resolve_user(user, _read(rootfs, "passwd"), _read(rootfs, "group"))


def resolve_user(user: str, passwd_text: str | None, group_text: str | None) -> dict[str, Any]:
    """Resolve ``name|uid[:group|gid]`` from an image's /etc/passwd and /etc/group, as Docker
    does: the primary group from passwd, and the supplementary groups the user is a member of
    in /etc/group."""
    name, _, group = user.partition(":")
    name = name or "0"
    passwd = _entries(passwd_text)
    groups = _entries(group_text)
    entry = next((f for f in passwd if (f[2] if name.isdigit() else f[0]) == name), None)
    if entry is None and not name.isdigit():
        raise CarrierError(f"unable to find user {name}: no matching entries in passwd file")
    try:
        uid = int(name) if name.isdigit() else int(entry[2])  # type: ignore[index]
        gid = int(entry[3]) if entry is not None else 0
    except ValueError:
        raise CarrierError(f"unable to use user {name}: malformed passwd entry") from None
    if group:
        found = next((f for f in groups if f[0] == group), None)
        if not group.isdigit() and found is None:
            raise CarrierError(f"unable to find group {group}: no matching entries in group file")
        gid = int(group) if group.isdigit() else int(found[2])  # type: ignore[index]
    extra = {gid}  # as Docker lists it: the primary group, then the memberships
    if entry is not None:
        extra.update(int(f[2]) for f in groups if entry[0] in f[3].split(",") and f[2].isdigit())
    return {"uid": uid, "gid": gid, "additionalGids": sorted(extra)}


def container_env(spec: Spec) -> list[str]:
    """The main process's environment: the spec's, with PATH and HOSTNAME defaulted."""
    env = list(spec.env)
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={spec.hostname}")
    if spec.tty and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")  # as Docker sets it for -t
    return env


def process(args: list[str], env: list[str], cwd: str, user: str, rootfs: Path, spec: Spec, *,
            terminal: bool = False) -> dict[str, Any]:
    """An OCI ``process`` object: for the container's main process and for ``exec``, with
    *spec*'s capabilities, no-new-privileges and rlimits (the same for both). As Podman: a
    non-root *user* keeps the bounding set but has only ``--cap-add``'s capabilities, and an
    ``exec -u`` of another non-root user than the container's has none."""
    oci_user = _user(user, rootfs)
    security = process_security(spec)
    if oci_user["uid"] != 0:
        bounding = security["capabilities"]["bounding"]
        security["capabilities"] = for_non_root(spec.cap_add if user == spec.user else (),
                                                bounding)
    return {
        "terminal": terminal,
        "user": oci_user,
        "args": args,
        "env": env,
        "cwd": cwd or "/",
        **security,
    }


def write_bundle(bundle: Path, spec: Spec, holder: Holder, rootfs: Path, *,
                 in_userns: bool = False, in_mountns: bool = False,
                 extra_mounts: Iterable[dict[str, Any]] = ()) -> None:
    """Write ``bundle/config.json`` for *spec*, joining *holder*'s namespaces; *rootfs* is where
    this process sees the root filesystem (for user and group names). *in_userns* and
    *in_mountns* say that the runtime runs in the holder's user and mount namespaces already.
    *extra_mounts* (binds, volumes, tmpfs; see ``_storage._mounts``) come after the standard
    ones, so that they may cover them."""
    env = container_env(spec)
    args = list(spec.args)
    if spec.init:  # PID 1 forwards signals to the command and reaps orphans, as Podman's --init
        extra_mounts = [*extra_mounts, {"destination": INIT_PATH, "type": "bind",
                                        "source": init_binary(),
                                        "options": ["bind", "ro", "nosuid", "nodev"]}]
        args = [INIT_PATH, "--", *args]
    mount: dict[str, str] = {"type": "mount"}
    if holder.mountns and not in_mountns:  # the root filesystem is mounted there
        mount["path"] = holder.ns_path("mnt")
    namespaces: list[dict[str, str]] = [{"type": "pid"}, mount]
    namespaces += [{"type": t, "path": holder.ns_path(n)} for t, n in (("uts", "uts"), ("ipc", "ipc"))]
    if holder.netns:
        namespaces.append({"type": "network", "path": holder.ns_path("net")})
    linux: dict[str, Any] = {"namespaces": namespaces}
    if not spec.privileged:  # --privileged unmasks /proc and /sys, as in Podman
        linux["maskedPaths"] = [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
            "/proc/scsi",
        ]
        linux["readonlyPaths"] = [
            "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
        ]
    else:
        extra_mounts = [*extra_mounts, *host_devices()]
    if holder.netns:  # Podman's default sysctl, in a namespace that is not the host's: ICMP
        # datagram (ping) sockets for root inside, which Podman's capability set leaves no NET_RAW
        linux["sysctl"] = {"net.ipv4.ping_group_range": "0 0"}
    filter_ = seccomp(spec)
    if filter_ is not None:
        linux["seccomp"] = filter_
    limits = resources(spec)
    if limits is not None:
        linux["resources"] = limits
    if holder.userns and not in_userns:
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
        "process": process(args, env, spec.cwd, spec.user, rootfs, spec, terminal=spec.tty),
        "root": {"path": "rootfs", "readonly": spec.read_only},
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
            *extra_mounts,
        ],
        "linux": linux,
    }
    write_json(bundle / "config.json", config)
