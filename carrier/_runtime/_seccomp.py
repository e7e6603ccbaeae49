"""The container's seccomp filter: Podman's default profile (the maintained data file that
Debian's ``golang-github-containers-common`` installs), or the user's, turned into the OCI
``linux.seccomp`` object that runc takes.

A profile in Podman's (Docker's) format has an ``archMap`` and syscall rules conditioned on
architectures and capabilities (``includes``/``excludes``); OCI has neither, so the rules are
resolved here for this machine's architecture and the container's capabilities. A profile
already in OCI form (``architectures``, no conditions) passes through.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from typing import Any

from .._util._errors import CarrierError

DEFAULT_PROFILE = "/usr/share/containers/seccomp.json"
"""Where Podman's default profile is found (override: ``CARRIER_SECCOMP_PROFILE``)."""

# Python's machine name -> (libseccomp's, Go's as the profile's "arches" conditions spell it)
_ARCH = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"), "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "i686": ("SCMP_ARCH_X86", "386"), "armv7l": ("SCMP_ARCH_ARM", "arm"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"), "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
}
_RULE_KEYS = ("names", "action", "errnoRet", "args")


def default_profile() -> str:
    """The default profile's path; one clear line when the data file is missing."""
    path = os.environ.get("CARRIER_SECCOMP_PROFILE", DEFAULT_PROFILE)
    if not os.path.isfile(path):
        raise CarrierError(f"the default seccomp profile {path} is missing (Debian: apt install "
                           "golang-github-containers-common), or run with --security-opt "
                           "seccomp=unconfined")
    return path


def load(path: str) -> dict[str, Any]:
    """The JSON profile at *path*, checked to be one: one line naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            profile = json.load(f)
    except OSError as e:
        raise CarrierError(f"cannot read seccomp profile {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise CarrierError(f"invalid seccomp profile {path}: {e}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str) or \
            not isinstance(profile.get("syscalls", []), list):
        raise CarrierError(f"invalid seccomp profile {path}: expected an object with "
                           "defaultAction and syscalls")
    return profile


def to_oci(profile: dict[str, Any], caps: Iterable[str]) -> dict[str, Any]:
    """*profile* as OCI ``linux.seccomp`` for this machine and the capabilities *caps*
    (``CAP_`` names): a rule applies when its arch and capability conditions hold."""
    have = set(caps)
    native, goarch = _ARCH.get(platform.machine(), (None, None))
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if "archMap" in profile:
        arches = [[m["architecture"], *(m.get("subArchitectures") or [])]
                  for m in profile["archMap"] or [] if m.get("architecture") == native]
        out["architectures"] = arches[0] if arches else ([native] if native else [])
    elif profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    rules = []
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict) or not (rule.get("names") or rule.get("name")):
            raise CarrierError("invalid seccomp profile: a syscall rule without names")
        inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
        if inc.get("arches") and goarch not in inc["arches"]:
            continue
        if goarch in (exc.get("arches") or []):
            continue
        if not set(inc.get("caps") or []) <= have:
            continue
        if set(exc.get("caps") or []) & have:
            continue
        if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
            continue
        oci = {k: rule[k] for k in _RULE_KEYS if rule.get(k) is not None}
        if "name" in rule and "names" not in oci:
            oci["names"] = [rule["name"]]
        if "args" in oci:
            oci["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a}
                           for a in oci["args"]]
        rules.append(oci)
    out["syscalls"] = rules
    return out


def _kernel_at_least(version: str) -> bool:
    """Whether this kernel's release is at least *version* (``5.8``)."""
    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in [*text.split("-")[0].split("."), "0", "0"][:2]
                     if p.isdigit())
    return numbers(platform.release()) >= numbers(version)


def seccomp_for(option: str | None, caps: Iterable[str]) -> dict[str, Any] | None:
    """The OCI seccomp object for ``--security-opt seccomp=`` *option* (None: the default
    profile; ``unconfined``: no filter)."""
    if option == "unconfined":
        return None
    return to_oci(load(option if option is not None else default_profile()), caps)
