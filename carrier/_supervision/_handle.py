"""The public side of a supervised container: the :class:`Container` handle that
:func:`carrier.run` yields and the trees use, and the values it speaks in (how a container
ended, what an exec gave back, where its streams go).

The handle reads and asks its group (``_group``) through :class:`Supervised`, the few things
it needs of one, so that this module does not import the group's machinery.
"""

from __future__ import annotations

import enum
import signal as _signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, final

import anyio

from .._util._errors import CarrierError, ReadyTimeoutError
from ._logreader import Joiner, LogLine
from ._logreader import follow as follow_log

if TYPE_CHECKING:
    from .._runtime._oci import Runtime
    from .._runtime._reaper import Init
    from .._sandbox._holder import Holder
    from .._state._records import Record
    from .._util import _process
    from .._util._root import Root
    from ._execstream import ExecProcess
    from ._logrecords import Record as LogRecord

LOG_TAIL = 20  # lines of output an ExitedBeforeReadyError carries


class Supervised(Protocol):
    """What the handle needs of its container's group (``_group._Group``)."""

    @property
    def root(self) -> Root: ...
    @property
    def record(self) -> Record: ...
    @property
    def bundle(self) -> Path: ...
    @property
    def runtime(self) -> Runtime: ...
    @property
    def holder(self) -> Holder | None: ...
    @property
    def child(self) -> _process.Child | Init | None: ...
    @property
    def final(self) -> Outcome | None: ...
    @property
    def cleaned(self) -> anyio.Event: ...
    @property
    def restart_requested(self) -> anyio.Event: ...
    @property
    def last_lines(self) -> list[LogRecord] | None: ...
    @property
    def run_end_hooks(self) -> list[Callable[[Outcome], None]]: ...
    join_gate: Callable[[], Awaitable[object]] | None
    def output_lines(self) -> list[LogLine]: ...
    def request_stop(self, timeout: float | None) -> None: ...
    async def connect_network(self, network: str, aliases: list[str],
                              ip: str | None) -> dict[str, Any]: ...
    async def disconnect_network(self, network: str) -> None: ...


class Reason(enum.StrEnum):
    """Why a container's group ended: the first member event wins."""

    EXITED = "exited"
    KILLED = "killed"
    UNHEALTHY = "unhealthy"
    STOP_REQUESTED = "stop-requested"
    RESTART_REQUESTED = "restart-requested"
    HOLDER_EXITED = "holder-exited"
    STORAGE_EXITED = "storage-exited"
    HELPER_EXITED = "helper-exited"
    NETWORK_EXITED = "network-exited"
    START_FAILED = "start-failed"
    RUNTIME_FAILED = "runtime-failed"


@dataclass(frozen=True)
class Outcome:
    """How a container ended: Docker's exit status, the reason, and a message for people."""

    exit_code: int
    reason: Reason
    message: str = ""


class ExitedBeforeReadyError(CarrierError):
    """The container ended for good before its readiness condition held: how it ended and the
    last lines of its output (when that goes to its log) say why."""

    def __init__(self, message: str, outcome: Outcome, log_tail: Sequence[str]) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.log_tail = tuple(log_tail)


class Check(Protocol):
    """What :meth:`Container.wait_for` and a host-side health check need of a condition: a
    :class:`carrier.Condition` (``_ready``) is one."""

    @property
    def description(self) -> str:
        """The condition as people say it."""
        ...

    def __call__(self, container: Container, /) -> Awaitable[bool]:
        """Whether the condition holds now."""
        ...


@dataclass(frozen=True)
class ExecResult:
    """What :meth:`Container.exec` gives back: the exit status and the two output streams."""

    exit_code: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Stdio:
    """Where the container's standard streams go (``None`` inherits ours)."""

    stdin: int | IO[Any] | None = None
    stdout: int | IO[Any] | None = None
    stderr: int | IO[Any] | None = None


@final
class Container:
    """A handle on a supervised container; you get one from :func:`carrier.run`."""

    def __init__(self, group: Supervised) -> None:
        self._group = group

    @property
    def id(self) -> str:
        """The full container id."""
        return self._group.record.id

    @property
    def name(self) -> str:
        """The container's name."""
        return self._group.record.name

    @property
    def outcome(self) -> Outcome | None:
        """How the container ended, once its group has been cleaned up."""
        return self._group.final

    @property
    def holder_pid(self) -> int | None:
        """The PID owning the container's namespaces while it runs."""
        return self._group.holder.pid if self._group.holder is not None else None

    @property
    def health(self) -> str | None:
        """``starting``, ``healthy`` or ``unhealthy`` with a health check; else None."""
        return (self._group.record.health or {}).get("status")

    def published(self, container_port: int, proto: str = "tcp") -> tuple[str, int]:
        """The host address and port that publish *container_port* (port 0 resolved)."""
        for p in (self._group.record.network or {}).get("published", []):
            if p["container_port"] == container_port and p["proto"] == proto:
                return str(p["host_ip"]), int(p["host_port"])
        raise CarrierError(f"container {self.name} does not publish {container_port}/{proto}")

    async def connect(self, network: str, *, aliases: Sequence[str] = (),
                      ip: str | None = None) -> None:
        """Connect the running container to named network *network* too (``carrier network
        connect``): an ``ethN`` with its address (*ip*, or the next free one), found by its
        name, hostname and *aliases*; it must have been started on a named network."""
        await self._group.connect_network(network, list(aliases), ip)

    async def disconnect(self, network: str) -> None:
        """Disconnect the container from a network :meth:`connect` joined."""
        await self._group.disconnect_network(network)

    def log_tail(self, lines: int = 200) -> list[LogLine]:
        """The last *lines* lines written so far, read at once: for code that cannot await
        (a pytest hook's report, the ``carrier.sync`` facade)."""
        return self._group.output_lines()[-lines:] if lines > 0 else []

    async def logs(self, *, follow: bool = False, stdout: bool = True,
                   stderr: bool = True) -> AsyncIterator[LogLine]:
        """The container's output, line by line, each with its stream and time (``async for``).

        With *follow*, it goes on as the container writes, woken by inotify, until the
        container has ended for good and been cleaned up. Once a ``remove=True`` container's
        files are gone (its block has ended), the last lines it wrote are still here, kept in
        memory (the last 200).

        **Cancellation:** safe; the files it reads are closed.
        """
        wanted = {s for s, keep in (("stdout", stdout), ("stderr", stderr)) if keep}
        group = self._group
        if not follow or group.last_lines is not None:
            for line in group.output_lines():
                if line.stream in wanted:
                    yield line
            return
        joiner = Joiner()
        async for batch in follow_log(group.bundle, group.cleaned):
            for line in joiner.feed(batch):
                if line.stream in wanted:
                    yield line
        for line in joiner.rest():
            if line.stream in wanted:
                yield line

    async def exec(self, argv: Sequence[str], *, env: Mapping[str, str] | Sequence[str] = (),
                   workdir: str | None = None, user: str | None = None,
                   stdin: bytes | None = None, timeout: float | None = None) -> ExecResult:
        """Run *argv* inside (as ``carrier exec``); return its exit status, stdout and stderr.

        *env* adds to the container's environment (a mapping or ``KEY=VALUE`` strings);
        *stdin* is fed to the command (else it reads nothing). After *timeout* seconds the
        command is killed and :class:`carrier.ExecTimeoutError` (a ``TimeoutError``) raised.

        **Cancellation:** the command inside and the runtime's exec are killed and reaped.
        """
        env = _env_list(env)
        from .._runtime._exec import exec_in  # the exec machinery loads only when used

        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                tempfile.TemporaryFile() as inp:
            inp.write(stdin or b"")
            inp.seek(0)
            code = await exec_in(self._group.root, self._group.record, argv, env=env,
                                 workdir=workdir, user=user, output=out, error=err,
                                 stdin=inp if stdin is not None else None, timeout=timeout)
            out.seek(0)
            err.seek(0)
            return ExecResult(code, out.read(), err.read())

    def exec_stream(self, argv: Sequence[str], *, env: Mapping[str, str] | Sequence[str] = (),
                    workdir: str | None = None, user: str | None = None, stdin: bool = False,
                    timeout: float | None = None) -> AbstractAsyncContextManager[ExecProcess]:
        """Run *argv* inside while the block reads its output as it comes:
        ``async with c.exec_stream(argv) as proc:`` gives ``proc.stdout`` and ``proc.stderr``
        (anyio byte streams), ``proc.stdin`` with *stdin* True (close it to end the input),
        and ``await proc.wait()``, the exit status. *env*, *workdir*, *user* and *timeout* are
        :meth:`exec`'s.

        **Leaving the block** ends the command: if it still runs, it is killed (inside, and the
        runtime's exec) and reaped; so does cancellation.
        """
        from ._execstream import exec_stream  # the exec machinery loads only when used

        return exec_stream(self._group.root, self._group.record, argv, env=_env_list(env),
                           workdir=workdir, user=user, stdin=stdin, timeout=timeout)

    async def copy_to(self, source: Path | str | bytes | IO[bytes], dest: str, *,
                      mode: int = 0o644) -> None:
        """Copy into the running container (``carrier cp``'s code): a host path (placed as
        ``carrier cp SRC NAME:DEST``), ``bytes`` (the file *dest*, with *mode*) or a binary
        file object holding a tar stream (unpacked into the directory *dest*)."""
        from ._files import copy_to  # the copy machinery loads only when used

        await copy_to(self._group.root, self._group.record, source, dest, mode=mode)

    async def copy_from(self, source: str, dest: Path | str) -> None:
        """Copy *source* out of the running container to the host path *dest*, placed as
        ``carrier cp NAME:SRC DEST`` places it (the archive is unpacked as untrusted)."""
        from ._files import copy_from  # the copy machinery loads only when used

        await copy_from(self._group.root, self._group.record, source, dest)

    async def wait_for(self, condition: Check, timeout: float = 60, interval: float = 0.05) -> None:
        """Wait until *condition* holds (see :mod:`carrier` ``port``, ``log_line``, ...); fail if
        the container ends for good or *timeout* passes.

        **Cancellation:** safe; nothing is left behind.
        """
        waits = getattr(condition, "wait", None)
        with anyio.move_on_after(timeout):
            if waits is not None:  # woken by what it watches: no probing
                if await waits(self):
                    return
                await self._group.cleaned.wait()  # it stopped watching: the container ended
            while True:
                if (outcome := self.outcome) is not None:  # ended for good (not between restarts)
                    tail = [line.text for line in self._group.output_lines()[-LOG_TAIL:]]
                    raise ExitedBeforeReadyError(
                        f"container {self.name} ended before it was ready ({condition.description}): "
                        f"{outcome.reason}, exit code {outcome.exit_code}"
                        + (f"; last output: {tail[-1]}" if tail else ""), outcome, tail)
                if await condition(self):
                    return
                await anyio.sleep(interval)  # bounded poll: sockets announce nothing
        raise ReadyTimeoutError(
            f"container {self.name} not ready within {timeout:g} s ({condition.description})"
        )

    async def wait(self) -> Outcome:
        """Wait until the container has ended and its group is cleaned up.

        **Cancellation:** safe; the container keeps running.
        """
        await self._group.cleaned.wait()
        assert self._group.final is not None
        return self._group.final

    def stop(self, timeout: float | None = None) -> None:
        """Ask for a graceful stop: SIGTERM, then SIGKILL after *timeout* (default: the spec's)."""
        self._group.request_stop(timeout)

    def restart(self) -> None:
        """End the current run gracefully and start a fresh one, whatever the restart policy
        (a ``one_for_all`` or ``rest_for_one`` sibling failed)."""
        self._group.restart_requested.set()

    def on_run_end(self, callback: Callable[[Container, Outcome], None]) -> None:
        """Call *callback* after each run of this container has ended and been cleaned."""
        self._group.run_end_hooks.append(lambda outcome: callback(self, outcome))

    def gate_joins(self, gate: Callable[[], Awaitable[object]]) -> None:
        """``--network container:OWNER``: each restart awaits *gate* before it joins the
        owner's network (a tree: until the owner, whose end ended this run, runs again); a stop
        ends the wait."""
        self._group.join_gate = gate

    @property
    def has_terminal(self) -> bool:
        """Whether the command runs on a pseudo-terminal (``run -t``)."""
        return self._group.record.spec.tty

    def resize(self) -> None:
        """After our terminal changed size: the runtime, which relays it to the container's
        pseudo-terminal, re-reads the size (SIGWINCH to the runtime process)."""
        if self._group.child is not None:
            self._group.child.signal(_signal.SIGWINCH)

    async def signal(self, sig: int) -> None:
        """Deliver *sig* to the container's main process (nothing if it is not running)."""
        await self._group.runtime.kill(self.id, str(int(sig)))


def _env_list(env: Mapping[str, str] | Sequence[str]) -> Sequence[str]:
    """An exec's *env* as ``KEY=VALUE`` strings (a mapping's keys checked)."""
    if isinstance(env, Mapping):
        bad = [k for k in env if not k or "=" in k]
        if bad:
            raise CarrierError(f"invalid exec env key {bad[0]!r}: expected a name without '='")
        return [f"{k}={v}" for k, v in env.items()]
    if isinstance(env, str):
        raise CarrierError(f"invalid exec env={env!r}: expected a mapping or a list")
    return env
