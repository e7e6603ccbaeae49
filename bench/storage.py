"""Storage: the per-container rootfs set-up per driver (native overlay, fuse-overlayfs, copy)
for the busybox image and a large one (~200 MB of random files), seen as the time from
``carrier run --rm --no-network --storage-driver D IMG stamp`` to its command running."""

from __future__ import annotations

from typing import Any

from bench._common import Context, interleave
from bench.start import carrier_cli, stamped

DRIVERS = ("overlay", "fuse-overlayfs", "copy")


def has_driver_option(ctx: Context) -> bool:
    """Whether this Carrier's ``run`` takes ``--storage-driver``."""
    return "--storage-driver" in ctx.carrier("run", "--help", check=False).stdout


def run(ctx: Context) -> dict[str, Any]:
    """Each (driver, image) pair as one variant, interleaved; the default driver always."""
    cli = carrier_cli()
    drivers: tuple[str | None, ...] = (None, *DRIVERS) if has_driver_option(ctx) else (None,)
    variants: dict[str, Any] = {}
    for role in ("small", "large"):
        image = ctx.images[role]
        for driver in drivers:
            flags = ["--storage-driver", driver] if driver else []

            def once(flags: list[str] = flags, image: str = image) -> dict[str, float]:
                return stamped([*cli, "run", "--rm", "--no-network", *flags, image, "stamp"], ctx.env,
                               timeout=300)

            variants[f"{driver or 'default'} {role}"] = once
    out: dict[str, Any] = {"variants": interleave(variants, ctx.runs), "large_mb": ctx.large_mb}
    if len(drivers) == 1:
        out["note"] = ("carrier run has no --storage-driver option yet: only the default driver "
                       "was measured")
        for driver in DRIVERS:
            for role in ("small", "large"):
                out["variants"][f"{driver} {role}"] = "unavailable: no --storage-driver option"
    return out
