"""The containers a detached supervisor or the keeper runs, and SIGTERM's meaning there: stop
each of them gracefully, also one that comes up after the signal."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._supervision._handle import Container


class Running(set["Container"]):
    """The running containers; once stopping, one that comes up is stopped at once (a SIGTERM
    that arrives while a container starts is not lost)."""

    stopping = False

    def add(self, container: Container) -> None:
        super().add(container)
        if self.stopping:
            container.stop()

    def stop(self) -> None:
        self.stopping = True
        for container in list(self):
            container.stop()


async def stop_on_sigterm(signals: Any, running: Running,
                          then: Callable[[], None] | None = None) -> None:
    """SIGTERM stops every container in *running*, then calls *then*; every other signal is
    handled and means nothing (SIGINT and SIGHUP do not end a detached supervisor)."""
    async for sig in signals:
        if sig == signal.SIGTERM:
            running.stop()
            if then is not None:
                then()
