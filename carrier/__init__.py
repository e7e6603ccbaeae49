"""Carrier: rootless Linux containers, run and supervised from Python.

The public names load on first use (PEP 562), so that the command line, which imports this
package first, pays only for the modules its command needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "CarrierError": "_errors", "ConflictError": "_errors", "NotFoundError": "_errors",
    "events": "_events",
    "Condition": "_ready", "all_of": "_ready", "healthy": "_ready", "http": "_ready",
    "log_line": "_ready", "port": "_ready", "predicate": "_ready", "tcp": "_ready",
    "run": "_run",
    "Container": "_supervisor", "Outcome": "_supervisor", "Reason": "_supervisor",
    "Stdio": "_supervisor",
}

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


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use, then keep it here."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'carrier' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
