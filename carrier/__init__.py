"""Carrier: rootless Linux containers, run and supervised from Python.

The public names load on first use (PEP 562), so that the command line, which imports this
package first, pays only for the modules its command needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._library._network import Network as Network
    from ._library._network import NetworkName as NetworkName
    from ._library._network import network as network
    from ._library._run import run as run
    from ._supervision._events import CleanedEvent as CleanedEvent
    from ._supervision._events import CreatedEvent as CreatedEvent
    from ._supervision._events import Event as Event
    from ._supervision._events import ExitedEvent as ExitedEvent
    from ._supervision._events import GaveUpEvent as GaveUpEvent
    from ._supervision._events import HealthyEvent as HealthyEvent
    from ._supervision._events import NetworkReadyEvent as NetworkReadyEvent
    from ._supervision._events import RestartingEvent as RestartingEvent
    from ._supervision._events import StartedEvent as StartedEvent
    from ._supervision._events import UnhealthyEvent as UnhealthyEvent
    from ._supervision._events import UnknownEvent as UnknownEvent
    from ._supervision._events import events as events
    from ._supervision._execstream import ExecProcess as ExecProcess
    from ._supervision._handle import Container as Container
    from ._supervision._handle import ExecResult as ExecResult
    from ._supervision._handle import ExitedBeforeReadyError as ExitedBeforeReadyError
    from ._supervision._handle import Outcome as Outcome
    from ._supervision._handle import Reason as Reason
    from ._supervision._handle import Stdio as Stdio
    from ._supervision._logreader import LogLine as LogLine
    from ._supervision._ready import Condition as Condition
    from ._supervision._ready import all_of as all_of
    from ._supervision._ready import healthy as healthy
    from ._supervision._ready import http as http
    from ._supervision._ready import log_line as log_line
    from ._supervision._ready import port as port
    from ._supervision._ready import predicate as predicate
    from ._supervision._ready import tcp as tcp
    from ._util._errors import CarrierError as CarrierError
    from ._util._errors import ConflictError as ConflictError
    from ._util._errors import ExecTimeoutError as ExecTimeoutError
    from ._util._errors import ImageNotFoundError as ImageNotFoundError
    from ._util._errors import NameInUseError as NameInUseError
    from ._util._errors import NotFoundError as NotFoundError
    from ._util._errors import PullError as PullError
    from ._util._errors import ReadyTimeoutError as ReadyTimeoutError
    from ._util._errors import RuntimeFailure as RuntimeFailure

_HOME = {
    "CarrierError": "_util._errors", "ConflictError": "_util._errors",
    "NotFoundError": "_util._errors", "ImageNotFoundError": "_util._errors",
    "NameInUseError": "_util._errors", "PullError": "_util._errors",
    "ReadyTimeoutError": "_util._errors", "RuntimeFailure": "_util._errors",
    "events": "_supervision._events",
    "CleanedEvent": "_supervision._events",
    "CreatedEvent": "_supervision._events",
    "Event": "_supervision._events",
    "ExitedEvent": "_supervision._events",
    "GaveUpEvent": "_supervision._events",
    "HealthyEvent": "_supervision._events",
    "NetworkReadyEvent": "_supervision._events",
    "RestartingEvent": "_supervision._events",
    "StartedEvent": "_supervision._events",
    "UnhealthyEvent": "_supervision._events",
    "UnknownEvent": "_supervision._events",
    "Condition": "_supervision._ready", "all_of": "_supervision._ready",
    "healthy": "_supervision._ready", "http": "_supervision._ready",
    "log_line": "_supervision._ready", "port": "_supervision._ready",
    "predicate": "_supervision._ready", "tcp": "_supervision._ready",
    "run": "_library._run",
    "Network": "_library._network", "network": "_library._network",
    "NetworkName": "_library._network",
    "Container": "_supervision._handle", "Outcome": "_supervision._handle",
    "ExitedBeforeReadyError": "_supervision._handle", "ExecResult": "_supervision._handle",
    "ExecTimeoutError": "_util._errors",
    "Reason": "_supervision._handle", "Stdio": "_supervision._handle",
    "LogLine": "_supervision._logreader", "ExecProcess": "_supervision._execstream",
}

__all__ = [
    "CarrierError",
    "CleanedEvent",
    "Condition",
    "ConflictError",
    "Container",
    "CreatedEvent",
    "Event",
    "ExecProcess",
    "ExecResult",
    "ExecTimeoutError",
    "ExitedBeforeReadyError",
    "ExitedEvent",
    "GaveUpEvent",
    "HealthyEvent",
    "ImageNotFoundError",
    "LogLine",
    "NameInUseError",
    "Network",
    "NetworkName",
    "NetworkReadyEvent",
    "NotFoundError",
    "Outcome",
    "PullError",
    "ReadyTimeoutError",
    "Reason",
    "RestartingEvent",
    "RuntimeFailure",
    "StartedEvent",
    "Stdio",
    "UnhealthyEvent",
    "UnknownEvent",
    "all_of",
    "events",
    "healthy",
    "http",
    "log_line",
    "network",
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
