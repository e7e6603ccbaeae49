"""Storage: the per-container rootfs set-up per driver (native overlay, fuse-overlayfs, copy)
for the busybox image and a large one (~200 MB of random files), seen as the time from
``carrier run --rm --no-network --storage-driver D IMG stamp`` to its command running."""

from __future__ import annotations

from typing import Any

from bench._common import Context, interleave
from bench.start import carrier_cli, stamped

DRIVERS = ("overlay", "fuse-overlayfs", "copy")


def run(ctx: Context) -> dict[str, Any]:
    """Each (driver, image) pair as one variant, interleaved; the default driver always."""
    cli = carrier_cli()
    drivers: tuple[str | None, ...] = (None, *DRIVERS)
    variants: dict[str, Any] = {}
    for role in ("small", "large"):
        image = ctx.images[role]
        for driver in drivers:
            flags = ["--storage-driver", driver] if driver else []

            def once(flags: list[str] = flags, image: str = image) -> dict[str, float]:
                return stamped([*cli, "run", "--rm", "--no-network", *flags, image, "stamp"], ctx.env,
                               timeout=300)

            variants[f"{driver or 'default'} {role}"] = once
    return {"variants": interleave(variants, ctx.runs), "large_mb": ctx.large_mb}
