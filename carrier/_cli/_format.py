"""Docker-style text for tables, ages and sizes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence


def ago(stamp: str | None) -> str:
    """How long ago *stamp* (RFC 3339) was: ``5 minutes``."""
    if not stamp:
        return ""
    then = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    secs = int((dt.datetime.now(dt.UTC) - then).total_seconds())
    for unit, size in (("years", 365 * 86400), ("months", 30 * 86400), ("weeks", 7 * 86400),
                       ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if secs >= size * 2:
            return f"{secs // size} {unit}"
    return f"{secs} seconds"


def table(rows: Sequence[tuple[str, ...]]) -> None:
    """Print *rows* as left-aligned columns, the first row being the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def size(n: float) -> str:
    """Docker's sizes: decimal units, three significant digits (``4.2MB``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n:.3g}TB"
