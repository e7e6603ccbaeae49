"""``carrier network``: the machine's readiness for rootless networking."""

from __future__ import annotations


def check() -> int:
    """Check this machine for rootless networking and say how to fix what is missing."""
    from .._network._doctor import check as run_check

    return run_check()
