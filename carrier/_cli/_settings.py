"""Option values read as Docker reads them: ``--env-file`` files and ``--label`` items."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .._util._errors import CarrierError


def read_env_files(paths: Iterable[str]) -> list[str]:
    """``KEY=VALUE`` items from Docker-format env files, in order: one variable a line, the
    value taken as it is (no quotes, no expansion), ``#`` comments and blank lines skipped, and
    a bare ``KEY`` taking this process's value (left out when it has none, as Docker)."""
    items: list[str] = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise CarrierError(f"cannot read --env-file {path}: {e.strerror or e}") from None
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise CarrierError(f"invalid --env-file {path}: it is not UTF-8 text") from None
        for number, line in enumerate(text.split("\n"), 1):
            line = line.removesuffix("\r").lstrip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            where = f"--env-file {path} line {number}"
            if not key:
                raise CarrierError(f"invalid {where}: no variable name before '='")
            if any(c.isspace() for c in key):
                raise CarrierError(f"invalid {where}: variable {key!r} contains whitespace")
            if sep:
                items.append(f"{key}={value}")
            elif key in os.environ:
                items.append(f"{key}={os.environ[key]}")
    return items


def parse_pairs(items: Iterable[str], what: str) -> dict[str, str]:
    """``KEY[=VALUE]`` items (labels, driver options) as a mapping: a bare KEY has the empty
    value, a later item for a key wins (as Docker); an empty KEY is one line naming *what*."""
    found: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise CarrierError(f"invalid {what} {item!r}: expected KEY=VALUE")
        found[key] = value
    return found


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """A container's ``--label`` items (:func:`parse_pairs`; a key may hold no whitespace)."""
    items = list(items)
    for item in items:
        if any(c.isspace() for c in item.partition("=")[0]):
            raise CarrierError(f"invalid label {item!r}: expected KEY=VALUE")
    return parse_pairs(items, "label")
