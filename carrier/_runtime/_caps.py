"""Capabilities of a container's processes: Podman's default set, ``--cap-add``/``--cap-drop``
(``ALL`` too) and ``--privileged``, resolved to the list the OCI ``process.capabilities`` takes.

Rootless, every capability is one of the container's user namespace: it acts on what that
namespace owns (its mounts, network, files mapped into it), never on the host's.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._util._errors import CarrierError

# The capabilities of Linux 6.x, in kernel order (include/uapi/linux/capability.h).
KNOWN = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)

# Podman 4's default_capabilities (containers.conf): Docker's set without NET_RAW, MKNOD and
# AUDIT_WRITE.
DEFAULT = (
    "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
)


def _supported() -> tuple[str, ...]:
    """The known capabilities this kernel has (``cap_last_cap``); runc refuses the others."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        return KNOWN
    return KNOWN[: last + 1]


def normalize(name: str, option: str) -> str:
    """``net_raw``, ``CAP_NET_RAW`` or ``ALL`` as ``NET_RAW``/``ALL``; unknown names refused."""
    upper = name.strip().upper()
    bare = upper.removeprefix("CAP_")
    if bare == "ALL" and upper == "ALL":
        return bare
    if bare not in KNOWN:
        raise CarrierError(f"invalid {option} {name!r}: unknown capability (e.g. NET_RAW, "
                           "CAP_SYS_ADMIN, or ALL)")
    return bare


def check(cap_add: Iterable[str], cap_drop: Iterable[str]) -> None:
    """Refuse any unknown capability name, by option."""
    for name in cap_add:
        normalize(name, "--cap-add")
    for name in cap_drop:
        normalize(name, "--cap-drop")


def resolve(cap_add: Iterable[str], cap_drop: Iterable[str], privileged: bool = False) -> list[str]:
    """The container's capabilities, ``CAP_`` names in kernel order, as Podman computes them:
    ``--cap-drop ALL`` keeps only what ``--cap-add`` names; ``--privileged`` or ``--cap-add ALL``
    starts from every capability, otherwise the default set and ``--cap-add``; then
    ``--cap-drop`` is taken away."""
    add = {normalize(n, "--cap-add") for n in cap_add}
    drop = {normalize(n, "--cap-drop") for n in cap_drop}
    supported = _supported()
    if "ALL" in drop:
        caps = set(supported) if "ALL" in add else add
    elif privileged or "ALL" in add:
        caps = set(supported) - drop
    else:
        caps = (set(DEFAULT) | add) - drop
    return [f"CAP_{c}" for c in supported if c in caps]


def for_non_root(cap_add: Iterable[str], bounding: list[str]) -> dict[str, list[str]]:
    """The OCI capabilities of a non-root user, as Podman 4.3 gives them (measured): the
    container's bounding set stays, and effective, permitted, inheritable and ambient hold only
    what ``--cap-add`` names (``ALL``: the whole bounding set) that the bounding set has, so an
    added capability survives the user's ``execve``; without ``--cap-add``, nothing."""
    add = {normalize(n, "--cap-add") for n in cap_add}
    given = list(bounding) if "ALL" in add else [c for c in bounding if c[4:] in add]
    return {"bounding": list(bounding), "effective": given, "permitted": given,
            "inheritable": given, "ambient": given}


# Docker's default set: ``podman inspect`` shows CapAdd and CapDrop against it.
DOCKER_DEFAULT = (*DEFAULT, "NET_RAW", "MKNOD", "AUDIT_WRITE")


def inspect_delta(caps: Iterable[str], privileged: bool) -> tuple[list[str], list[str]]:
    """``HostConfig.CapAdd`` and ``CapDrop`` as Podman 4.3 shows them (measured): the
    container's capabilities (``CAP_`` names) beyond Docker's default set, and those of that
    set it lacks, sorted; a privileged container's, against every capability there is."""
    have = set(caps)
    base = {f"CAP_{c}" for c in (_supported() if privileged else DOCKER_DEFAULT)}
    return sorted(have - base), sorted(base - have)
