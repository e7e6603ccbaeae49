"""Carrier: rootless Linux containers, run and supervised from Python."""

from ._errors import CarrierError as CarrierError
from ._errors import ConflictError as ConflictError
from ._errors import NotFoundError as NotFoundError
from ._events import events as events
from ._ready import Condition as Condition
from ._ready import all_of as all_of
from ._ready import healthy as healthy
from ._ready import http as http
from ._ready import log_line as log_line
from ._ready import port as port
from ._ready import predicate as predicate
from ._ready import tcp as tcp
from ._run import run as run
from ._supervisor import Container as Container
from ._supervisor import Outcome as Outcome
from ._supervisor import Reason as Reason
from ._supervisor import Stdio as Stdio

__all__ = [
    "CarrierError",
    "Condition",
    "ConflictError",
    "Container",
    "NotFoundError",
    "Outcome",
    "Reason",
    "Stdio",
    "all_of",
    "events",
    "healthy",
    "http",
    "log_line",
    "port",
    "predicate",
    "run",
    "tcp",
]
