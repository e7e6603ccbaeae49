"""Carrier: rootless Linux containers, run and supervised from Python."""

from ._errors import CarrierError as CarrierError
from ._errors import ConflictError as ConflictError
from ._errors import NotFoundError as NotFoundError
from ._run import run as run
from ._supervisor import Container as Container
from ._supervisor import Outcome as Outcome
from ._supervisor import Reason as Reason
from ._supervisor import Stdio as Stdio

__all__ = [
    "CarrierError",
    "ConflictError",
    "Container",
    "NotFoundError",
    "Outcome",
    "Reason",
    "Stdio",
    "run",
]
