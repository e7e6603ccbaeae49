"""``ps --filter KEY=VALUE``, with Podman's semantics: values of one key match if any of them
does (``label`` only if all do), and different keys must all match.

``name`` is a regular expression searched in the name; ``id`` an id prefix or a regular
expression matched at its start; ``label`` ``KEY`` or ``KEY=VALUE``; ``status`` one of Podman's
states; ``ancestor`` the image's id (or a prefix of it) or a regular expression searched in the
image's name (``NAME`` also matches ``NAME:latest``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._util._errors import CarrierError

if TYPE_CHECKING:
    from .._state._records import Record

STATUSES = ("created", "running", "exited", "paused", "stopped", "stopping", "configured",
            "initialized", "removing", "unknown")
"""The states Podman's status filter takes (Carrier's containers are only ever in the first
three)."""

Predicate = Callable[["Record"], bool]


def _regex(value: str, text: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as e:
        raise CarrierError(f"invalid filter {text!r}: bad regular expression ({e})") from None


def _one(key: str, value: str, text: str) -> Predicate:
    """The predicate of one ``KEY=VALUE``."""
    if key == "name":
        pattern = _regex(value, text)
        return lambda r: pattern.search(r.name) is not None
    if key == "id":
        pattern = _regex(value, text)
        return lambda r: r.id.startswith(value) or pattern.match(r.id) is not None
    if key == "label":
        label, has_value, wanted = value.partition("=")
        return lambda r: label in r.spec.labels and (not has_value or r.spec.labels[label] == wanted)
    if key == "status":
        if value not in STATUSES:
            raise CarrierError(f"invalid filter {text!r}: {value!r} is not a valid status "
                               f"({', '.join(STATUSES)})")
        return lambda r: str(r.status) == value
    if key == "ancestor":
        pattern = _regex(value, text)

        def ancestor(r: Record) -> bool:
            image_id = r.spec.image_id.removeprefix("sha256:")
            bare, _, tag = r.spec.image.rpartition(":") if ":" in r.spec.image else (r.spec.image, "", "")
            return ((bool(value) and image_id.startswith(value.removeprefix("sha256:")))
                    or pattern.search(r.spec.image) is not None
                    or (tag == "latest" and pattern.search(bare) is not None))

        return ancestor
    raise CarrierError(f"invalid filter {text!r}: unknown key {key!r} "
                       "(use ancestor, id, label, name or status)")


def parse(filters: Sequence[str]) -> tuple[Predicate, set[str]]:
    """The predicate that all of *filters* make together, and the keys they use."""
    by_key: dict[str, list[Predicate]] = {}
    for text in filters:
        key, has_value, value = text.partition("=")
        if not has_value:
            raise CarrierError(f"invalid filter {text!r}: expected KEY=VALUE")
        by_key.setdefault(key, []).append(_one(key, value, text))

    def matches(r: Record) -> bool:
        for key, preds in by_key.items():
            combine = all if key == "label" else any
            if not combine(p(r) for p in preds):
                return False
        return True

    return matches, set(by_key)
