"""A synchronous facade over :func:`carrier.run`, for scripts and plain (non-async) pytest.

It is a thin wrapper and nothing more: the async library runs on a private event loop in a
thread of its own (anyio's blocking portal), and each call below hops to that thread and waits
for the answer. The container is supervised, stopped and cleaned exactly as with the async API;
leaving the ``with`` block (also by an exception or Ctrl-C) leaves the async block there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from functools import partial
from pathlib import Path
from typing import IO, Literal, ParamSpec, final, get_args

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._library._network import Helper, Network, NetworkName
from ._library._network import network as _async_network
from ._library._run import run as _async_run
from ._supervision._handle import Container as _AsyncContainer
from ._supervision._handle import ExecResult, Outcome
from ._supervision._logreader import LogLine
from ._supervision._ready import Condition
from ._util._errors import CarrierError

P = ParamSpec("P")
Backend = Literal["asyncio", "trio"]


@final
class Container:
    """The synchronous face of a :class:`carrier.Container`: each method runs the async one on
    the private event loop and waits for it."""

    def __init__(self, portal: BlockingPortal, container: _AsyncContainer) -> None:
        self._portal = portal
        self.aio = container
        """The async container underneath (usable only on the private loop's thread)."""

    @property
    def id(self) -> str:
        """The full container id."""
        return self.aio.id

    @property
    def name(self) -> str:
        """The container's name."""
        return self.aio.name

    @property
    def outcome(self) -> Outcome | None:
        """How the container ended, once its group has been cleaned up."""
        return self.aio.outcome

    def published(self, container_port: int, proto: str = "tcp") -> tuple[str, int]:
        """The host address and port that publish *container_port*."""
        return self._portal.call(partial(self.aio.published, container_port, proto))

    def logs(self) -> list[LogLine]:
        """The lines the container wrote so far, each with its stream (as
        :meth:`carrier.Container.logs` without ``follow``)."""
        async def collect() -> list[LogLine]:
            return [line async for line in self.aio.logs()]

        return self._portal.call(collect)

    def exec(self, argv: Sequence[str], *, env: Mapping[str, str] | Sequence[str] = (),
             workdir: str | None = None, user: str | None = None, stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run *argv* inside and wait for it, as :meth:`carrier.Container.exec`."""
        return self._portal.call(partial(self.aio.exec, argv, env=env, workdir=workdir,
                                         user=user, stdin=stdin, timeout=timeout))

    def copy_to(self, source: Path | str | bytes | IO[bytes], dest: str, *,
                mode: int = 0o644) -> None:
        """Copy into the container, as :meth:`carrier.Container.copy_to`."""
        self._portal.call(partial(self.aio.copy_to, source, dest, mode=mode))

    def copy_from(self, source: str, dest: Path | str) -> None:
        """Copy out of the container to the host, as :meth:`carrier.Container.copy_from`."""
        self._portal.call(partial(self.aio.copy_from, source, dest))

    def wait_for(self, condition: Condition, timeout: float = 60) -> None:
        """Wait until *condition* holds, as :meth:`carrier.Container.wait_for`."""
        self._portal.call(partial(self.aio.wait_for, condition, timeout))

    def stop(self, timeout: float | None = None) -> None:
        """Ask for a graceful stop (it returns at once; :meth:`wait` waits for the end)."""
        self._portal.call(partial(self.aio.stop, timeout))

    def wait(self) -> Outcome:
        """Wait until the container has ended and its group is cleaned up."""
        return self._portal.call(self.aio.wait)


def _synchronous(
    start: Callable[P, AbstractAsyncContextManager[_AsyncContainer]], backend: Backend
) -> Callable[P, AbstractContextManager[Container]]:
    """*start* (``carrier.run``) as a plain context manager run on a private *backend* loop."""
    if backend not in get_args(Backend):
        raise CarrierError(f"invalid backend={backend!r}: choose {', '.join(get_args(Backend))}")

    @contextmanager
    def run(*args: P.args, **kwargs: P.kwargs) -> Iterator[Container]:
        with start_blocking_portal(backend) as portal, \
                portal.wrap_async_context_manager(start(*args, **kwargs)) as container:
            yield Container(portal, container)

    run.__doc__ = (f"``carrier.run`` as a plain context manager, on a private {backend} event "
                   "loop in a thread; same options, yields a synchronous :class:`Container`.")
    return run


@contextmanager
def network(name: str | None = None, *, internal: bool = False, subnet: str | None = None,
            helper: Helper = "auto", labels: Mapping[str, str] | None = None,
            root: Path | str | None = None) -> Iterator[Network]:
    """:func:`carrier.network` as a plain context manager (on a private asyncio loop in a
    thread): yields the :class:`carrier.Network` to pass to :func:`run`, removes it after."""
    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(
            _async_network(name, internal=internal, subnet=subnet, helper=helper,
                           labels=labels, root=root)) as net:
        yield net


using = partial(_synchronous, _async_run)
"""``using("trio")`` is ``run`` on a private event loop of that backend:
``carrier.sync.using("trio")(image, ...)``."""


run = _synchronous(_async_run, "asyncio")
"""``with carrier.sync.run(image, command, **options) as c:``: :func:`carrier.run` from
synchronous code, on a private asyncio loop in a thread. Same options; ``c`` is a
:class:`Container` whose methods block."""

__all__ = ["Backend", "Container", "ExecResult", "Network", "NetworkName", "Outcome", "network", "run",
           "using"]
