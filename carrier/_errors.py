"""Errors that Carrier reports to people: one line, exit code 125 (Docker's convention)."""

from __future__ import annotations


class CarrierError(Exception):
    """A failure of Carrier itself or of its input, reported as one line with exit code 125."""

    exit_code = 125


class NotFoundError(CarrierError):
    """An image or container that the user named does not exist."""


class ConflictError(CarrierError):
    """A name is taken, or an object is in a state that forbids the request."""


class RuntimeFailure(CarrierError):
    """The OCI runtime, the holder or a helper failed before the container could run."""
