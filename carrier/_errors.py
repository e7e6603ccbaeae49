"""Errors that Carrier reports to people: one line, exit code 125 (Docker's convention)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class CarrierError(Exception):
    """A failure of Carrier itself or of its input, reported as one line with exit code 125."""

    exit_code = 125


class NotFoundError(CarrierError):
    """An image or container that the user named does not exist."""


class ConflictError(CarrierError):
    """A name is taken, or an object is in a state that forbids the request."""


class RuntimeFailure(CarrierError):
    """The OCI runtime, the holder or a helper failed before the container could run."""


def _only_leaf(exc: BaseException) -> BaseException | None:
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@contextlib.contextmanager
def unwrapped() -> Iterator[None]:
    """Re-raise a task group's lone :class:`CarrierError` as itself, so that a failed start
    reads as one error (and one line) rather than as an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = _only_leaf(group)
        if isinstance(leaf, CarrierError):
            raise leaf from None
        raise
