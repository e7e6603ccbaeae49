"""Health checks: Docker's flags, run inside the container by the runtime's exec.

The health watcher is a member of the container's group. The first check runs one interval
after the start; failures during ``--health-start-period`` do not count. ``--health-retries``
consecutive failures make the container unhealthy, and ``--health-on-failure`` (Podman's)
decides: ``none`` records it, ``kill`` ends the group (the restart policy then decides), and
``restart`` ends the group and restarts the container whatever the policy. The state and the
last outputs are kept in the container's record (``carrier info``).
"""

from __future__ import annotations

import shlex
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from .._state._records import Record, now
from .._util._errors import CarrierError

ACTIONS = ("none", "kill", "restart")
_KEEP = 5


@dataclass(frozen=True)
class HealthConfig:
    """The health check of one container."""

    argv: list[str]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    on_failure: str = "none"
    probe: Any = None  # a host-side readiness Condition (library), instead of a command

    @classmethod
    def from_spec(cls, spec: Any, probe: Any = None) -> HealthConfig | None:
        """The spec's health check (or the library's host-side *probe*), validated; None when
        there is none."""
        if not spec.health_cmd and probe is None:
            return None
        if spec.health_on_failure not in ACTIONS:
            raise CarrierError(
                f"invalid --health-on-failure {spec.health_on_failure!r}: use none, kill or restart"
            )
        if spec.health_interval <= 0 or spec.health_timeout <= 0 or spec.health_retries < 1 \
                or spec.health_start_period < 0:
            raise CarrierError("invalid health check timing: interval and timeout must be > 0, "
                               "retries >= 1, start period >= 0")
        argv = ["/bin/sh", "-c", spec.health_cmd] if spec.health_cmd else []
        return cls(argv, spec.health_interval, spec.health_timeout, spec.health_retries,
                   spec.health_start_period, spec.health_on_failure, probe)


Probe = Callable[[list[str], Any], Any]  # (argv, output file) -> awaitable exit status


async def watch(config: HealthConfig, record: Record, probe: Probe,
                changed: Callable[[str | None], None]) -> None:
    """Check until the container is unhealthy and the action ends the group (then return),
    or the group is cancelled.

    After every check *changed* is called with the new state (``healthy``, ``unhealthy``), or
    None when the state stayed; the record's ``health`` holds the state, the failing streak
    and the last outputs.
    """
    started = time.monotonic()
    health: dict[str, Any] = {"status": "starting", "failing_streak": 0, "log": []}
    record.health = health
    while True:
        await anyio.sleep(config.interval)
        begin = now()
        with tempfile.TemporaryFile() as out:
            code: int | None = None
            with anyio.move_on_after(config.timeout):
                code = await probe(config.argv, out)
            out.seek(0)
            text = out.read(4096).decode(errors="replace")
        if code is None:
            text = f"health check timed out after {config.timeout:g} s"
            code = -1
        health["log"] = [*health["log"], {"start": begin, "end": now(), "exit_code": code,
                                          "output": text}][-_KEEP:]
        if code == 0:
            health["failing_streak"] = 0
            became = health["status"] != "healthy"
            health["status"] = "healthy"
            changed("healthy" if became else None)
            continue
        if time.monotonic() - started < config.start_period:
            changed(None)
            continue
        health["failing_streak"] += 1
        if health["failing_streak"] < config.retries:
            changed(None)
        elif health["status"] != "unhealthy":
            health["status"] = "unhealthy"
            changed("unhealthy")
            if config.on_failure != "none":
                return
        else:
            changed(None)


def describe(config: HealthConfig) -> str:
    """The check as people write it."""
    return config.probe.description if config.probe is not None else shlex.join(config.argv)
