"""Carrier's log events go to the stdlib ``logging`` module, through structlog's stdlib
integration, so that an application's own logging configuration decides what is shown.

The library only logs: the ``carrier`` logger has a ``NullHandler`` (the stdlib's rule for
libraries), so without a configuration of yours nothing reaches stderr, not even warnings.
Each record's message is the event and its fields as ``key=value`` text; the record also has
``carrier_event`` and ``carrier_fields`` for handlers that want them apart. The CLI
(:func:`configure`) puts a handler on the ``carrier`` logger that renders those as before:
readable lines (coloured on a terminal), or JSON lines with ``--log-format json``.

structlog (with the rich it pulls in) costs about 100 ms to import, more than a whole container
start, so it is imported only when an event at an enabled level is actually emitted, or when
the CLI configures its output. Context such as the container's name is kept in a context
variable (so it follows each container's tasks, as ``structlog.contextvars`` would) and merged
into every event.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator, MutableMapping
from typing import IO, Any

_stdlib = logging.getLogger("carrier")
_stdlib.addHandler(logging.NullHandler())
_context: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "carrier_log", default=()
)
# Where this context's events go instead of stderr: a keeper running many containers' groups
# gives each its own log (``sink``); the context follows each group's tasks and worker threads.
_sink: contextvars.ContextVar[IO[str] | None] = contextvars.ContextVar("carrier_sink", default=None)
_logger: Any = None
_handler: logging.Handler | None = None
_configured: tuple[str, str] | None = None


def _to_record(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog's last step: the stdlib call's arguments (readable message, fields apart)."""
    event = str(event_dict.pop("event"))
    text = " ".join([event, *(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}"
                              for k, v in event_dict.items())])
    return {"msg": text, "extra": {"carrier_event": event, "carrier_fields": dict(event_dict)}}


def _structlog_logger() -> Any:
    """The structlog logger bound to the stdlib ``carrier`` logger (imported on first use)."""
    global _logger
    if _logger is None:
        import structlog

        _logger = structlog.wrap_logger(_stdlib, wrapper_class=structlog.stdlib.BoundLogger,
                                        processors=[_to_record])
    return _logger


def _from_record(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The CLI formatter's first step: the event dict back from a Carrier record's fields."""
    record = event_dict["_record"]
    fields = getattr(record, "carrier_fields", None)
    if fields is None:
        return event_dict
    meta = {k: v for k, v in event_dict.items() if k.startswith("_")}  # the formatter's own
    return {**fields, "event": record.carrier_event, **meta}  # in structlog's order


class _Rendered(logging.Formatter):
    """The CLI's formatter: structlog's rendering of Carrier's events, built on the first
    record so that a command that logs nothing never imports structlog."""

    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt
        self.inner: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self.inner is None:
            import structlog

            as_json = self.fmt == "json"  # asked for; piped or not, people get plain lines
            renderer: Any = (structlog.processors.JSONRenderer() if as_json
                             else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
            self.inner = structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[_from_record, structlog.processors.add_log_level,
                                   structlog.processors.TimeStamper(fmt="iso", utc=True)],
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                            renderer],
            )
        return self.inner.format(record)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, or the stream :func:`sink` set for this context."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = _sink.get()
        if stream is None:
            super().emit(record)
            return
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configured() -> tuple[str, str] | None:
    """The level and format :func:`configure` was last given here (a process started for this
    one, such as a detached supervisor, configures itself the same way)."""
    return _configured


def configure(level: str = "warning", fmt: str = "auto") -> None:
    """The CLI's output: events at *level* and above to stderr, rendered as *fmt* (auto:
    console on a TTY, JSON lines for ``json``), as structlog renders them."""
    global _handler, _configured
    if _handler is not None:
        _stdlib.removeHandler(_handler)
    _configured = (level, fmt)
    _handler = _Handler(sys.stderr)
    _handler.setFormatter(_Rendered(fmt))
    _stdlib.addHandler(_handler)
    _stdlib.setLevel(getattr(logging, level.upper()))
    _stdlib.propagate = False  # the CLI's handler is its one output


class Logger:
    """The few methods Carrier logs with; cheap when the level is disabled."""

    def _emit(self, level: int, name: str, event: str, fields: dict[str, Any]) -> None:
        if _stdlib.isEnabledFor(level):
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


@contextlib.contextmanager
def sink(stream: IO[str]) -> Iterator[None]:
    """Send the events logged in this context (this task, those it starts, their worker
    threads) to *stream* rather than stderr: one container's log in a process that runs many."""
    token = _sink.set(stream)
    try:
        yield
    finally:
        _sink.reset(token)
