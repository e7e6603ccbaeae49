"""Image platforms (``os/architecture[/variant]``): parsing, the host's, and matching index entries.

Stdlib only, so both the registry client and ``carrier load`` can use it without httpx.
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from .._util._errors import CarrierError

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


@dataclass(frozen=True)
class Platform:
    """An image platform ``os/architecture[/variant]``."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` (``x86_64`` and ``aarch64`` are accepted as aliases)."""
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise CarrierError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
        return cls(parts[0], _ARCH.get(parts[1], parts[1]), parts[2] if len(parts) == 3 else None)

    @classmethod
    def host(cls) -> Platform:
        """This machine's platform (``linux/amd64`` on x86_64, ``linux/arm64`` on aarch64)."""
        machine = _platform.machine()
        return cls("linux", _ARCH.get(machine, machine))

    @classmethod
    def of(cls, descriptor: Any) -> Platform | None:
        """The platform an index entry (a descriptor) is for, as written there; None when it names
        none, or is ``unknown`` (build attestations, not images)."""
        p = descriptor.get("platform") if isinstance(descriptor, dict) else None
        if not isinstance(p, dict) or not p.get("os") or not p.get("architecture"):
            return None
        if p["os"] == "unknown" or p["architecture"] == "unknown":
            return None
        return cls(str(p["os"]), str(p["architecture"]), str(p["variant"]) if p.get("variant") else None)

    def matches(self, other: Platform | None) -> bool:
        """Whether *other* (an entry's platform) is this platform; arm64 without a variant is v8."""
        if other is None or (other.os, other.architecture) != (self.os, self.architecture):
            return False
        if self.variant is None:
            return True
        return (other.variant or ("v8" if other.architecture == "arm64" else None)) == self.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)
