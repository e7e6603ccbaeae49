"""Errors that Carrier reports to people: one line, exit code 125 (Docker's convention)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class CarrierError(Exception):
    """A failure of Carrier itself or of its input, reported as one line with exit code 125."""

    exit_code = 125


class NotFoundError(CarrierError):
    """An image or container that the user named does not exist."""


class ImageNotFoundError(NotFoundError):
    """The image is neither stored nor known to its registry (or ``pull="never"``)."""


class PullError(CarrierError):
    """Pulling the image failed for another reason: registry unreachable, denied, corrupt."""


class ConflictError(CarrierError):
    """A name is taken, or an object is in a state that forbids the request."""


class NameInUseError(ConflictError):
    """Another container already has the requested name."""


class RuntimeFailure(CarrierError):
    """The OCI runtime, the holder or a helper failed before the container could run."""


class ReadyTimeoutError(CarrierError, TimeoutError):
    """The container's readiness condition did not hold within its time limit."""


class ExecTimeoutError(CarrierError, TimeoutError):
    """A command run with ``exec`` did not finish within its time limit, so it was killed."""


def only_leaf(exc: BaseException) -> BaseException | None:
    """The single exception inside (nested) groups of one; None if there are several."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc


@contextlib.contextmanager
def unwrapped() -> Iterator[None]:
    """Re-raise a task group's lone exception as itself, so that a failed start reads as one
    error (one line for a :class:`CarrierError`), and a library user's own exception from the
    body of ``async with carrier.run(...)`` comes back as what they raised."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaf = only_leaf(group)
        if leaf is not None:
            raise leaf from None
        raise
