"""Readiness conditions for the library: wait until a container is really ready to use.

A condition is an async predicate over a :class:`~carrier.Container`, probed until it holds
(every ``interval`` seconds, within a bound): a port listening inside, a line in the logs, a
healthy health check, or any predicate of yours. ``all_of`` combines them, so "the log says
ready *and* the port is open" never fires on the log line alone.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from ._handle import Container


@dataclass(frozen=True)
class Condition:
    """A named readiness check."""

    description: str
    check: Callable[[Container], Awaitable[bool]]
    # Returns True once the condition holds, or False once it never can (the container ended),
    # woken by events: :meth:`Container.wait_for` uses it instead of probing, when there is one.
    wait: Callable[[Container], Awaitable[bool]] | None = None

    async def __call__(self, container: Container) -> bool:
        return await self.check(container)


def _listening(holder_pid: int, port: int, proto: str) -> bool:
    """Whether a socket in the container's network namespace listens on *port*."""
    for table in (f"{proto}", f"{proto}6"):
        try:
            with open(f"/proc/{holder_pid}/net/{table}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    # TCP: state 0A is LISTEN; UDP: 07 is an unconnected bound socket
                    if local_port == port and fields[3] in ("0A", "07"):
                        return True
        except (OSError, StopIteration, ValueError, IndexError):
            continue
    return False


def port(container_port: int, proto: str = "tcp") -> Condition:
    """Ready once something in the container listens on *container_port*."""

    async def check(c: Container) -> bool:
        holder = c.holder_pid
        return holder is not None and _listening(holder, container_port, proto)

    return Condition(f"port {container_port}/{proto} listening", check)


def tcp(container_port: int) -> Condition:
    """Ready once a connection to the published host port is accepted *and* kept: a helper
    accepts on the host side at once, then resets the connection if nothing inside does."""

    async def check(c: Container) -> bool:
        host, host_port = c.published(container_port)
        try:
            with anyio.fail_after(2):
                stream = await anyio.connect_tcp(host, host_port)
        except (OSError, TimeoutError):
            return False
        async with stream:
            with anyio.move_on_after(0.1):  # held open this long: a real peer inside
                try:
                    await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    return False
            return True

    return Condition(f"tcp {container_port}", check)


def http(container_port: int, path: str = "/", status: int = 200) -> Condition:
    """Ready once ``GET path`` through the published port answers *status* (httpx)."""

    async def check(c: Container) -> bool:
        import httpx

        host, host_port = c.published(container_port)
        url = f"http://{host if ':' not in host else f'[{host}]'}:{host_port}{path}"
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(url)).status_code == status
        except httpx.HTTPError:
            return False

    return Condition(f"http GET :{container_port}{path} -> {status}", check)


def log_line(pattern: str) -> Condition:
    """Ready once the container's output has a line matching the regular expression."""
    regex = re.compile(pattern.encode())

    async def check(c: Container) -> bool:
        async for line in c.logs():
            if regex.search(line.data):
                return True
        return False

    async def wait(c: Container) -> bool:
        async for line in c.logs(follow=True):  # woken by inotify as output comes
            if regex.search(line.data):
                return True
        return False

    return Condition(f"log line /{pattern}/", check, wait)


def healthy() -> Condition:
    """Ready once the container's health check passed (needs ``health_cmd``)."""

    async def check(c: Container) -> bool:
        return c.health == "healthy"

    return Condition("healthy", check)


def predicate(fn: Callable[[Container], Awaitable[bool]], description: str = "predicate") -> Condition:
    """Ready once your async *fn(container)* returns True."""
    return Condition(description, fn)


def all_of(*conditions: Condition) -> Condition:
    """Ready once every condition holds at the same probe."""

    async def check(c: Container) -> bool:
        for cond in conditions:
            if not await cond(c):
                return False
        return True

    return Condition(" and ".join(c.description for c in conditions), check)
