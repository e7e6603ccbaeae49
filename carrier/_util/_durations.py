"""Durations as Docker spells them (``500ms``, ``10s``, ``1m30s``, plain seconds), for every
time option of the CLI, the trees and the library, checked once: finite, not negative, and
below ten years (anything longer is a typo, and would overflow the timers)."""

from __future__ import annotations

import math
import re

from ._errors import CarrierError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SCALE = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
MAX_SECONDS = 10 * 365 * 86400


def parse_duration(text: str | float, option: str = "duration", *, positive: bool = False) -> float:
    """Seconds from ``30``, ``30s``, ``500ms``, ``1m30s`` or ``1h`` (or a number of seconds),
    for *option* (named in the error); with *positive*, zero is refused too."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise CarrierError(f"invalid {option} {text!r}: expected a duration such as 10s")
    if isinstance(text, str):
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise CarrierError(
                    f"invalid {option} {text!r}: use e.g. 10s, 500ms, 1m30s or plain seconds")
            seconds = sum(float(n) * _SCALE[u] for n, u in parts)
    else:
        seconds = float(text)
    return check_seconds(option, seconds, positive=positive)


def check_seconds(option: str, seconds: float, *, positive: bool = False) -> float:
    """*seconds* if it is a usable time for *option*, else a one-line error naming it."""
    if math.isnan(seconds) or seconds < 0 or (positive and seconds == 0):
        need = "more than 0" if positive else "0 or more"
        raise CarrierError(f"invalid {option} {seconds:g}: it must be {need} seconds")
    if seconds > MAX_SECONDS:
        raise CarrierError(f"invalid {option} {seconds:g}: at most {MAX_SECONDS} seconds (10 years)")
    return seconds


def check_count(option: str, value: object, *, minimum: int = 0, maximum: int = 1_000_000) -> int:
    """*value* if it is a whole number from *minimum* to *maximum*, else a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise CarrierError(f"invalid {option} {value!r}: expected a whole number from {minimum} "
                           f"to {maximum}")
    return value
