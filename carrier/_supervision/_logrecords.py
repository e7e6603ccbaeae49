"""The records of a container's log, in Podman's ``k8s-file`` format (the CRI log format).

Each record is one line ``TIME STREAM TAG CONTENT``: *TIME* is RFC 3339 with nanoseconds in
UTC (``2026-12-01T11:24:53.123456789Z``; an offset such as ``+01:00``, as conmon writes, is read
too), *STREAM* is ``stdout`` or ``stderr``, *TAG* is ``F`` for the end of a line and ``P`` for a
part of one whose rest follows in later records of the same stream (output that came without
its newline yet). *CONTENT* never holds a newline: the line break ends the record.

The older format (before streams were kept apart) is the raw output in ``container.log``;
it is read as ``stdout`` stamped with that file's modification time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

Stream = Literal["stdout", "stderr"]

_RECORD = re.compile(
    rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) (stdout|stderr) ([FP]) "
)

# --since/--until: a date, or a date and time, with up to nanoseconds and a zone
_TIME = re.compile(r"(\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?)?)(?:\.(\d{1,9}))?(Z|z|[+-]\d\d:\d\d)?")


@dataclass(frozen=True)
class Record:
    """One record: a whole line (``partial`` False) or a part of one, without its newline."""

    stream: Stream
    time_ns: int  # since the epoch, UTC
    data: bytes
    partial: bool = False


def stamp(time_ns: int) -> str:
    """*time_ns* as RFC 3339 with nanoseconds in UTC, the form records and ``logs -t`` use."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    day = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{day}.{nanos:09d}Z"


def encode(stream: Stream, time_ns: int, data: bytes) -> bytes:
    """*data* (a chunk of output of *stream*) as records: one per line, a ``P`` record for an
    unfinished last line."""
    prefix = f"{stamp(time_ns)} {stream} ".encode()
    whole, _, rest = data.rpartition(b"\n")
    out = b""
    if _:  # one join for all the whole lines: a chunk holds thousands of them
        out = prefix + b"F " + whole.replace(b"\n", b"\n" + prefix + b"F ") + b"\n"
    if rest:
        out += prefix + b"P " + rest + b"\n"
    return out


def decode(line: bytes) -> Record | None:
    """The record on *line* (its newline stripped or not); None if it is not one."""
    m = _RECORD.match(line)
    if m is None:
        return None
    seconds = dt.datetime.fromisoformat(
        (m[1] + (b"+00:00" if m[3] == b"Z" else m[3])).decode()).timestamp()
    nanos = int((m[2] or b"0").ljust(9, b"0"))
    data = line[m.end():]
    if data.endswith(b"\n"):
        data = data[:-1]
    stream: Stream = "stdout" if m[4] == b"stdout" else "stderr"
    return Record(stream, int(seconds) * 1_000_000_000 + nanos, data, m[5] == b"P")


def parse_time(text: str, option: str, now_ns: int) -> int:
    """``--since``/``--until``: RFC 3339 (a date alone too), Unix seconds, or a duration before
    *now_ns* (``10m``, ``1h30m``), as nanoseconds since the epoch."""
    from .._util._durations import parse_duration
    from .._util._errors import CarrierError

    try:
        if re.fullmatch(r"\d+(\.\d+)?", text) and len(text.split(".")[0]) >= 9:
            return int(float(text) * 1_000_000_000)  # Unix seconds, as Docker takes them
        if re.fullmatch(r"(\d+(\.\d+)?(ms|s|m|h))+", text):
            return now_ns - int(parse_duration(text, option) * 1_000_000_000)
        m = _TIME.fullmatch(text)
        if m is None:
            raise ValueError(text)
        offset = "+00:00" if m[3] in (None, "Z", "z") else m[3]  # no zone: UTC, as records
        seconds = int(dt.datetime.fromisoformat(m[1] + offset).timestamp())
    except (ValueError, CarrierError):
        raise CarrierError(f"invalid {option} {text!r}: use RFC 3339 (2026-12-01T10:00:00Z), "
                           "Unix seconds, or a duration such as 10m") from None
    return seconds * 1_000_000_000 + int((m[2] or "0").ljust(9, "0"))
