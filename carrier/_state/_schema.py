"""The format of ``state.json`` across Carrier versions: a schema version, migrations from older
records, and typed decoding that keeps what this version does not know.

A record carries ``"version"``. Records without one are version 0 (Carrier before versions);
each step of :data:`_MIGRATIONS` lifts a record one version. Fields this version does not know
(written by a newer Carrier) are kept aside and written back unchanged, so a newer Carrier
finds them again. Decoding checks every known field's type (msgspec, against the dataclasses'
annotations); a record that fails is *damaged*, and :func:`salvage` picks out the fields that
can still be trusted, so that its processes can be reaped.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from .._util._errors import CarrierError

RECORD_VERSION = 1
"""The version of ``state.json`` this Carrier writes."""

T = TypeVar("T")


def _v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Version 0 had no ``version`` key; fields added later take their defaults."""
    return data


_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _v0_to_v1}


class Damaged(CarrierError):
    """A record that cannot be read as this version's format; *salvage* holds what can."""

    def __init__(self, path: str, problem: str, salvage: dict[str, Any]) -> None:
        super().__init__(f"{path} is damaged ({problem})")
        self.path = path
        self.problem = problem
        self.salvage = salvage


def migrate(data: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Lift *data* to :data:`RECORD_VERSION`; return it and the version it was written as."""
    version = data.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"version {version!r} is not a version")
    written = version
    while version < RECORD_VERSION:
        data = _MIGRATIONS[version](data)
        version += 1
    return data, written


def split(cls: type[Any], data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keys of *data* that dataclass *cls* declares, and the others (kept for writing back)."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra", "version"}
    return ({k: v for k, v in data.items() if k in names},
            {k: v for k, v in data.items() if k not in names and k != "version"})


def convert(data: Any, cls: type[T]) -> T:
    """*data* as an instance of *cls*, every field type-checked; ``ValueError`` says where not."""
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as e:
        raise ValueError(str(e)) from None


def salvage(cls: type[Any], data: Any) -> dict[str, Any]:
    """The fields of *data* that have the type *cls* declares for them, one by one."""
    if not isinstance(data, dict):
        return {}
    hints = typing.get_type_hints(cls)
    found: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in data and not dataclasses.is_dataclass(hints[f.name]):
            try:
                found[f.name] = msgspec.convert(data[f.name], hints[f.name])
            except msgspec.ValidationError:
                continue
    return found
