"""Carrier's log events, rendered by structlog: readable lines (coloured on a terminal), JSON
lines only with ``--log-format json``.

structlog (with the rich it pulls in) costs about 100 ms to import, more than a whole container
start, so it is imported only when an event at an enabled level is actually emitted. Context
such as the container's name is kept in a context variable (so it follows each container's
tasks, as ``structlog.contextvars`` would) and merged into every event.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any

_level = logging.WARNING
_format = "auto"
_context: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "carrier_log", default=()
)
_logger: Any = None


def configure(level: str = "warning", fmt: str = "auto") -> None:
    """Emit events at *level* and above to stderr, rendered as *fmt* (auto: console on a TTY)."""
    global _logger, _level, _format
    _level = getattr(logging, level.upper())
    _format = fmt
    _logger = None


def _structlog_logger() -> Any:
    global _logger
    if _logger is None:
        import structlog

        as_json = _format == "json"  # asked for; piped or not, people get plain lines
        renderer: Any = (structlog.processors.JSONRenderer() if as_json
                         else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
        _logger = structlog.wrap_logger(
            structlog.PrintLogger(sys.stderr),
            processors=[structlog.processors.add_log_level,
                        structlog.processors.TimeStamper(fmt="iso", utc=True), renderer],
        )
    return _logger


class Logger:
    """The few methods Carrier logs with; cheap when the level is disabled."""

    def _emit(self, level: int, name: str, event: str, fields: dict[str, Any]) -> None:
        if level >= _level:
            getattr(_structlog_logger(), name)(event, **{**dict(_context.get()), **fields})

    def debug(self, event: str, **fields: Any) -> None:
        """Log at debug level."""
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log at info level."""
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log at warning level."""
        self._emit(logging.WARNING, "warning", event, fields)


log = Logger()


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add *fields* to every event logged in this context (this task and those it starts)."""
    token = _context.set((*_context.get(), *fields.items()))
    try:
        yield
    finally:
        _context.reset(token)
