"""A container's security options, from the spec to the OCI config: capabilities,
``--security-opt`` (no-new-privileges, seccomp) and, through ``_limits``, its resource limits.
Each is checked when the container is created (one line, 125, nothing stored).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._state._records import Spec
from .._util._errors import CarrierError
from . import _caps, _seccomp
from ._limits import check_limits, parse_ulimits


@dataclass(frozen=True)
class SecurityOpts:
    """``--security-opt`` values: no-new-privileges, and the seccomp profile (None: the
    default one; ``unconfined``; or an absolute path)."""

    no_new_privileges: bool = False
    seccomp: str | None = None


def parse_security_opts(items: Iterable[str]) -> SecurityOpts:
    """``no-new-privileges[=true|false]``, ``seccomp=unconfined`` and ``seccomp=PROFILE.json``;
    any other value is refused. (The profile is read by :func:`check_spec` and at each start.)"""
    nnp, seccomp = False, None
    for item in items:
        key, sep, value = item.partition("=")
        if key == "no-new-privileges" and (not sep or value in ("true", "false")):
            nnp = value != "false"
        elif key == "seccomp" and value == "unconfined":
            seccomp = value
        elif key == "seccomp" and value:
            seccomp = os.path.abspath(value)
        else:
            raise CarrierError(f"invalid --security-opt {item!r}: expected no-new-privileges, "
                               "seccomp=unconfined or seccomp=PROFILE.json")
    return SecurityOpts(nnp, seccomp)


def capabilities(spec: Spec) -> list[str]:
    """The capabilities of every process of *spec*'s container (main and exec)."""
    return _caps.resolve(spec.cap_add, spec.cap_drop, spec.privileged)


def process_security(spec: Spec) -> dict[str, Any]:
    """The OCI ``process`` fields for *spec*: capabilities, no-new-privileges, rlimits."""
    caps = capabilities(spec)
    fields: dict[str, Any] = {
        "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": parse_security_opts(spec.security_opt).no_new_privileges,
    }
    if spec.ulimit:
        fields["rlimits"] = parse_ulimits(spec.ulimit)
    return fields


def seccomp(spec: Spec) -> dict[str, Any] | None:
    """The OCI ``linux.seccomp`` of *spec* (None: no filter, as with ``--privileged`` unless a
    profile was named, or ``seccomp=unconfined``)."""
    option = parse_security_opts(spec.security_opt).seccomp
    if spec.privileged and option is None:
        return None
    return _seccomp.seccomp_for(option, capabilities(spec))


def check_spec(spec: Spec) -> None:
    """Check and normalise every security and resource option of *spec* at create time: the
    capability names, ``--security-opt`` (a profile's path made absolute, the profile read), the
    default profile's presence, ``--ulimit`` and the cgroup limits."""
    _caps.check(spec.cap_add, spec.cap_drop)
    spec.security_opt = [
        f"seccomp={os.path.abspath(item.partition('=')[2])}"
        if item.startswith("seccomp=") and item not in ("seccomp=", "seccomp=unconfined")
        else item
        for item in spec.security_opt
    ]
    opts = parse_security_opts(spec.security_opt)
    if opts.seccomp is None and not spec.privileged:
        _seccomp.load(_seccomp.default_profile())
    elif opts.seccomp not in (None, "unconfined"):
        _seccomp.load(opts.seccomp)
    parse_ulimits(spec.ulimit)
    check_limits(spec)
