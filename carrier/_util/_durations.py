"""Durations as Docker spells them (``500ms``, ``10s``, ``1m30s``, plain seconds), for every
time option of the CLI, the trees and the library."""

from __future__ import annotations

import re

from ._errors import CarrierError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str | float) -> float:
    """Seconds from ``30``, ``30s``, ``500ms``, ``1m30s`` or ``1h`` (Docker's spellings)."""
    if isinstance(text, int | float):
        return float(text)
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise CarrierError(f"invalid duration {text!r}: use e.g. 30s, 500ms or 1m30s")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)
