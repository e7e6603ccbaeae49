"""A fixture factory for containers, and the report hook that shows a failed test the last
lines its containers wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pytest

from .._library._run import run
from .._supervision._handle import Container

Scope = Literal["function", "class", "module", "package", "session"]

LOG_LINES = 30
"""How many of a container's last output lines a failed test's report shows by default."""

_tail_lines: dict[str, int] = {}  # container id -> lines to show, while its fixture is live


@dataclass(frozen=True)
class Use:
    """A placeholder for another fixture's value (made by :func:`use`)."""

    fixture: str


def use(fixture: str) -> Any:
    """An option value taken from another fixture when the container fixture is set up:
    ``container_fixture(use("image"), root=use("carrier_root"))``."""
    return Use(fixture)


def _resolve(value: Any, request: pytest.FixtureRequest) -> Any:
    """*value*, or the value of the fixture it names."""
    return request.getfixturevalue(value.fixture) if isinstance(value, Use) else value


def container_fixture(
    image: str | Use,
    command: Sequence[str] | Use = (),
    *,
    scope: Scope = "function",
    name: str | None = None,
    log_lines: int = LOG_LINES,
    stop_timeout: float | str | Use = 2.0,
    **options: Any,
) -> Any:
    """A pytest fixture that runs ``carrier.run(image, command, **options)`` for its *scope*
    and yields the ready :class:`carrier.Container`; assign it to a module-level name.

    Any value may be ``use("fixture")`` to take another fixture's value (an image built in a
    fixture, a private root). When a test that used it fails, its report gets a section with
    the container's last *log_lines* output lines. *stop_timeout* defaults to 2 s: a test
    suite does not want to wait 10 s for a PID 1 that ignores SIGTERM. The fixture needs
    pytest's anyio plugin (``pytest.mark.anyio``) and an ``anyio_backend`` fixture of at least
    the same scope.
    """

    async def container(request: pytest.FixtureRequest, anyio_backend: Any
                        ) -> AsyncIterator[Container]:
        kwargs = {key: _resolve(value, request) for key, value in options.items()}
        kwargs["stop_timeout"] = _resolve(stop_timeout, request)
        async with run(_resolve(image, request), _resolve(command, request), **kwargs) as c:
            _tail_lines[c.id] = log_lines
            try:
                yield c
            finally:
                _tail_lines.pop(c.id, None)

    container.__doc__ = f"A container of image {image!r} (carrier.testing.container_fixture)."
    return pytest.fixture(scope=scope, name=name)(container)


def _log_tail(c: Container, lines: int) -> str:
    """The last *lines* lines of the container's log."""
    return "\n".join(line.text for line in c.log_tail(lines))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Add the last log lines of each container the failed test used to its report."""
    report = yield
    if report.failed:
        for fixture, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, Container) and (lines := _tail_lines.get(value.id)) is not None:
                report.sections.append(
                    (f"carrier container {value.name} ({fixture}): last {lines} log lines",
                     _log_tail(value, lines) or "(no output in its log)"))
    return report
