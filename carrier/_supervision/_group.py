"""A container's supervision group: the container process, its network helper and port forwarders,
its holder, its health watcher, and its stop and restart watchers (docs/supervisors.md).

Each member is a task in one anyio task group. The first member to end records the outcome
and cancels the group; whatever ended it, the same shielded cleanup then runs, in a fixed order:
stop the container (SIGTERM once, the stop timeout, SIGKILL), delete the runtime's state, end
the helper and remove its files, end the holder, record the exit, remove the files of a
``--rm`` container, release the lock. A foreground run that reports its exit as soon as the group
is cleaned has the helper of a ``--rm`` container without published ports ended after that.
"""

from __future__ import annotations

import contextlib
import os
import signal as _signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._images._store import Store
from .._network import _netlink
from .._network._options import MODES
from .._network._setup import Bridged, ContainerNetwork, setup_bridged, setup_joined, write_network_files
from .._network._setup import start as start_network
from .._runtime._bundle import write_bundle
from .._runtime._console import Console, is_terminal
from .._runtime._oci import Runtime, check_process_headroom, resolve, start_failure, transient_failure
from .._runtime._reaper import Init, is_subreaper, reap_orphans, starting
from .._sandbox._enter import enter_argv
from .._sandbox._holder import Holder, start_holder
from .._state._records import Containers, Record, Status, now
from .._storage._mounts import prepare as prepare_mounts
from .._storage._rootfs import Rootfs
from .._util import _process
from .._util._durations import check_seconds
from .._util._errors import CarrierError, RuntimeFailure, unwrapped
from .._util._inotify import wait_for_file
from .._util._logging import bound, log
from .._util._root import Root
from . import _events, _netgroup
from ._attach import Hub
from ._connect import Connected, Connecting
from ._control import answer, serve_control
from ._handle import Check, Container, Outcome, Reason, Stdio
from ._health import HealthConfig, describe, watch
from ._logreader import Joiner, LogLine, lines
from ._logrecords import Record as LogRecord
from ._logwriter import LogWriter, log_options
from ._output import Output
from ._restart import RestartPolicy, RestartTracker

if TYPE_CHECKING:
    pass

class _Group(Connecting):
    """One container's members and cleanup."""

    def __init__(self, root: Root, record: Record, lock_fd: int, stdio: Stdio,
                 health_probe: Check | None = None,
                 on_running: Callable[[Container], None] | None = None,
                 on_launch: Callable[[], None] | None = None, helper_last: bool = False) -> None:
        self.root = root
        self.containers = Containers(root)
        self.record = record
        self.lock_fd = lock_fd
        self.stdio = stdio
        self.runtime = Runtime(resolve(record.spec.runtime), root.runtime)
        self.bundle = self.containers.dir(record.id)
        self.holder: Holder | None = None
        self.rootfs: Rootfs | None = None
        self.network: ContainerNetwork | None = None
        self.attachment: _netgroup.Attachment | None = None  # on a named network
        self.connected: dict[str, Connected] = {}  # networks joined while running (connect)
        self.connecting = anyio.Lock()  # one connect or disconnect at a time
        self.run_tg: TaskGroup | None = None  # the running run's members, while it runs
        self.owner_pidfd: int | None = None  # --network container:NAME: the owner's holder
        self.owner_hosts: tuple[int, int, str] | None = None  # inotify fd, owner's PID, own line
        self.join_gate: Callable[[], Awaitable[object]] | None = None
        self.console: Console | None = None
        self.output: Output | None = None
        self.log: LogWriter | None = None
        self.child: _process.Child | Init | None = None  # the runtime, or the init it left
        self.detached = False  # this run's runtime exits once the command runs (a subreaper)
        self.outcome: Outcome | None = None
        self.final: Outcome | None = None
        self.stop_timeout = record.spec.stop_timeout
        self.stop_requested = anyio.Event()
        self.hurry = anyio.Event()  # set when a stop's timeout was changed
        self.cleaned = anyio.Event()
        self.helper_last = helper_last
        self.network_left: ContainerNetwork | None = None  # stopped after the exit is reported
        self.gave_up: str | None = None
        self.restart_requested = anyio.Event()
        self.run_end_hooks: list[Callable[[Outcome], None]] = []
        self.health_probe = health_probe
        self.health: HealthConfig | None = None
        self.on_running = on_running
        self.on_launch = on_launch
        self.last_lines: list[LogRecord] | None = None  # the end of the log once --rm removed it
        self.stdin_fd = -1  # a detached -i run's stdin pipe, its write end (attach writes to it)
        self.attached = Hub(lambda: self.console.master if self.console is not None
                            else self.stdin_fd, self.end_input)
        self.run_end_hooks.append(lambda outcome: self.attached.ended(outcome.exit_code))

    def output_lines(self) -> list[LogLine]:
        """Every line of output the log holds (the last ones, once ``--rm`` removed it)."""
        if self.last_lines is not None:
            joiner = Joiner()
            return [*joiner.feed(self.last_lines), *joiner.rest()]
        return lines(self.bundle)

    def end_input(self) -> None:
        """Close a detached ``-i`` run's stdin pipe: the command reads EOF (an attached
        client's input ended, or the run ended)."""
        if self.stdin_fd >= 0:
            anyio.notify_closing(self.stdin_fd)  # wakes an attach writing to it, safely
            os.close(self.stdin_fd)
            self.stdin_fd = -1

    async def exec_detached(self, sock: socket.socket, request: dict[str, Any]) -> None:
        """``exec -d`` asked on the control socket: run the runtime's detached exec from here,
        so that this subreaper adopts the command and reaps it when it ends (orphaned to the
        host's init instead, it stays a zombie where that init does not reap); answer the
        start's status (a task of the control socket's server; it closes *sock*)."""
        from .._runtime._exec import exec_in

        adopted: list[Init] = []

        def adopt(pid: int) -> None:  # ours only as a subreaper (the CLI's supervisors)
            if is_subreaper():
                adopted.append(Init(pid))

        with sock:
            reply: dict[str, Any]
            try:
                argv, env = request["argv"], request.get("env") or []
                with starting():  # its command, not yet adopted, may already be a zombie
                    code = await exec_in(self.root, self.record, argv, env=env,
                                         workdir=request.get("workdir"),
                                         user=request.get("user"), detach=True,
                                         on_detached=adopt)
                reply = {"exit_code": code}
            except Exception as e:
                reply = {"exit_code": 125, "error": str(e) if isinstance(e, CarrierError)
                         else f"exec -d failed: {e!r}"}
            answer(sock, reply)
        for init in adopted:
            try:
                await init.wait()
            finally:  # the supervisor ends: the container, and so the command, has ended
                if init.returncode is None:
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await init.wait()
                init.close()

    def request_stop(self, timeout: float | None) -> None:
        """Stop the container, within *timeout* seconds of its SIGTERM (default: the spec's).
        A request during a stop already in flight can only shorten it (``rm -f`` kills now)."""
        if timeout is not None:
            try:  # it comes over the control socket: a number of seconds, or it is ignored
                timeout = check_seconds("stop timeout", float(timeout))
            except (TypeError, ValueError, CarrierError):
                timeout = None
        if timeout is not None:
            self.stop_timeout = min(self.stop_timeout, timeout) if self.stop_requested.is_set() \
                else timeout
            self.hurry.set()
        self.stop_requested.set()

    def end(self, outcome: Outcome, tg: TaskGroup) -> None:
        """Record the first member event and cancel the group."""
        if self.outcome is None:
            self.outcome = outcome
            log.info("member.ended", reason=str(outcome.reason), exit_code=outcome.exit_code)
        tg.cancel_scope.cancel()

    def event(self, kind: str, **attrs: Any) -> None:
        """Record a lifecycle event for ``carrier events``."""
        _events.emit(self.root.path, self.record.id, self.record.name, kind, **attrs)

    async def run(self, *, task_status: TaskStatus[Container]) -> None:
        """Run the container, restart it as its policy says, and clean up once at the end."""
        spec = self.record.spec
        tracker = RestartTracker(RestartPolicy.parse(
            spec.restart, delay=spec.restart_delay, max_delay=spec.restart_max_delay,
            intensity=spec.restart_intensity, period=spec.restart_period,
        ))
        self.health = health = HealthConfig.from_spec(spec, self.health_probe)
        status: TaskStatus[Container] | None = task_status
        with bound(container=self.record.name):
            try:
                # Known at once, so that stop, rm and reconcile see a live supervisor from the
                # start (a failed save still ends in _finish, which lets go of the lock).
                self.record.supervisor_pid = os.getpid()
                self.record.supervisor_start = _process.start_time(os.getpid())
                self.containers.save(self.record)
                async with anyio.create_task_group() as control:
                    control.start_soon(serve_control, self.record.id, self.request_stop, self.bundle,
                                       self.attached.serve, self.exec_detached,
                                       self.network_request)
                    await self._runs(tracker, health, status)
                    with anyio.move_on_after(5):  # a guard: a stuck client never holds us
                        await self.attached.drained()
                    control.cancel_scope.cancel()
            finally:
                with anyio.CancelScope(shield=True):  # cancellation cannot interrupt it
                    await self._finish()
                    if self.network_left is not None:  # nothing observable: after the exit is known
                        await self.network_left.stop()
                        self.network_left = None

    async def _runs(self, tracker: RestartTracker, health: HealthConfig | None,
                    status: TaskStatus[Container] | None) -> None:
        """Run after run, as the restart policy says."""
        while True:
            began = time.monotonic()
            await self._run_once(status)
            status = None
            assert self.outcome is not None
            for hook in self.run_end_hooks:
                hook(self.outcome)
            self.restart_requested = anyio.Event()
            stopped = self.stop_requested.is_set()
            decision: float | str | None
            if self.outcome.reason is Reason.RESTART_REQUESTED and not stopped:
                decision = 0.0  # a sibling failed: no backoff, no count against this policy
            else:
                unhealthy_restart = (self.outcome.reason is Reason.UNHEALTHY and health is not None
                                     and health.on_failure == "restart")
                decision = tracker.decide(self.outcome.exit_code, stopped=stopped,
                                          now=time.monotonic(), ran_for=time.monotonic() - began,
                                          force=unhealthy_restart)
            if not isinstance(decision, float):
                if decision is not None:
                    self.gave_up = decision
                    self.event("gave-up", reason=decision, restarts=tracker.count)
                break
            self.event("restarting", delay=decision, restarts=tracker.count,
                       exit_code=self.outcome.exit_code)
            with anyio.move_on_after(decision):
                await self.stop_requested.wait()
            if self.stop_requested.is_set():
                break
            self.record.restarts = tracker.count
            self.record.transition(Status.CREATED)

    async def _run_once(self, task_status: TaskStatus[Container] | None) -> None:
        """One run: fresh namespaces, helper and runtime process; the per-run cleanup."""
        self.holder, self.network, self.child, self.outcome = None, None, None, None
        self.detached = False
        self.attachment = None
        self.owner_pidfd = None
        self.owner_hosts = None
        self.rootfs = None
        self.console = None
        self.output = None
        try:
            await self._start()
            if task_status is not None:
                task_status.started(Container(self))
            async with anyio.create_task_group() as tg:
                self.run_tg = tg
                tg.start_soon(self._watch_container, tg)
                if self.console is not None:
                    tg.start_soon(self.console.relay)
                if self.output is not None:
                    tg.start_soon(self.output.relay)
                tg.start_soon(self._watch_holder, tg)
                if self.rootfs is not None and self.rootfs.fuse is not None:
                    tg.start_soon(self._watch_storage, tg, self.rootfs.fuse)
                tg.start_soon(self._watch_stop, tg)
                tg.start_soon(self._watch_restart, tg)
                if self.network is not None and self.network.helper is not None:
                    tg.start_soon(self._watch_helper, tg)
                if self.network is not None and self.network.forwards:
                    tg.start_soon(self._forward_ports, tg)
                if self.attachment is not None:
                    message = f"the network {self.attachment.network.name} ended (its holder exited)"
                    tg.start_soon(self._watch_network, tg, self.attachment.holder_pidfd, message)
                if self.owner_pidfd is not None:
                    message = f"the network of {self.record.spec.network} ended (its holder exited)"
                    tg.start_soon(self._watch_network, tg, self.owner_pidfd, message)
                if self.owner_hosts is not None:
                    tg.start_soon(self._follow_owner_hosts, *self.owner_hosts)
                if self.health is not None:
                    tg.start_soon(self._watch_health, tg, self.health)
        except Exception as exc:
            if self.outcome is None:
                message = str(exc) if isinstance(exc, CarrierError) else repr(exc)
                self.outcome = Outcome(125, Reason.START_FAILED, message)
            if task_status is not None:  # the first start fails to the caller
                raise
        except BaseException:
            if self.outcome is None:
                self.outcome = Outcome(125, Reason.START_FAILED, "cancelled")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._cleanup_run()

    async def _start(self) -> None:
        spec = self.record.spec
        if spec.network not in ("none", "host"):  # overlap pyroute2's import with set-up
            with contextlib.suppress(RuntimeError):  # no thread to spare: import when needed
                threading.Thread(target=_netlink.preload, daemon=True).start()
        check_process_headroom()
        image = Store(self.root).get(spec.image_id)
        self.rootfs = rootfs = Rootfs(spec.storage_driver, image.layers, self.bundle)
        host_network = spec.network == "host"  # --elevated: root, and truly the host's
        in_userns: bool | None = None  # whether the runtime runs in the holder's user namespace
        if spec.network.startswith("container:"):
            await self._join_container(rootfs, spec.network.split(":", 1)[1])
        elif spec.network not in MODES:
            await self._join_network(rootfs)
        else:
            self.holder = holder = await start_holder(
                userns=not host_network, netns=not host_network, mountns=rootfs.needs_mountns)
            # The helper's start and its readiness wait overlap the root filesystem and the
            # bundle, which need only the holder; the network files need both.
            with unwrapped():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._start_network, holder)
                    await rootfs.prepare(holder)
                    in_userns = await self._write_bundle(rootfs, image.layers)
            assert self.network is not None
            write_network_files(self.network, spec, self.record.name, self.bundle, rootfs.view())
        assert self.holder is not None
        assert self.network is not None
        self.record.network = self.network.info
        self.event("network-ready", mode=self.network.mode)
        if in_userns is None:
            in_userns = await self._write_bundle(rootfs, image.layers)
        await rootfs.activate()
        (self.bundle / "runtime.log").unlink(missing_ok=True)
        pid_file = self.bundle / "container.pid"
        pid_file.unlink(missing_ok=True)
        self.record.container_pid = None
        if self.log is None:
            self.log = LogWriter(self.bundle, *log_options(spec.log_opt))
            self.log.tap = self.attached.publish
        writer = self.log
        streams: tuple[int | IO[Any] | None, ...]
        if spec.tty and not is_terminal(self.stdio.stdin):  # no terminal input to relay
            self.console = Console(self.stdio.stdout, sink=lambda data: writer.write("stdout", data))
            streams = (self.console.slave,) * 3
        elif spec.tty:  # the runtime relays our own terminal: nothing passes through here
            streams = (self.stdio.stdin, self.stdio.stdout, self.stdio.stderr)
        else:
            self.output = Output(writer, self.stdio.stdout, self.stdio.stderr)
            streams = (self._stdin(), *self.output.write_ends)
        # In a subreaper, the runtime exits once the command runs and leaves us its init; a
        # terminal needs the runtime in the foreground to relay it (``_console``).
        self.detached = is_subreaper() and not spec.tty
        inside = enter_argv(self.holder.pid, userns=in_userns, mount=rootfs.runtime_inside)
        with starting():
            try:
                running = await self._launch(streams, inside)
            finally:  # the runtime holds our ends of the streams now, or nobody does
                if isinstance(streams[0], int) and streams[0] >= 0 and self.stdin_fd >= 0:
                    os.close(streams[0])
                if self.console is not None:
                    self.console.started()
                if self.output is not None:
                    self.output.started()
        reap_orphans()
        if running:
            self.record.container_pid = cpid = int(pid_file.read_text())
            if self.attachment is not None:  # its hosts file, as later joins and leaves rewrite it
                hosts = Path(f"/proc/{cpid}/root/etc/hosts")
                att = self.attachment
                await anyio.to_thread.run_sync(
                    lambda: _netgroup.announce(self.root, att, hosts, keep=True))
        elif start_failure(self.bundle / "runtime.log") is None:
            # It ended before the command ran, and not over the command (126, 127): it failed.
            assert self.child is not None
            code = _process.exit_status(await self.child.wait())
            raise RuntimeFailure(f"the OCI runtime {self.runtime.binary} failed before the command "
                                 f"started (exit status {code})")
        self.record.transition(Status.RUNNING)
        self.record.started = now()
        self.record.holder_pid = self.holder.pid
        self.record.holder_start = _process.start_time(self.holder.pid)
        self.containers.save(self.record)
        if self.on_running is not None:  # at once, before any other task runs
            self.on_running(Container(self))
        self.event("started", restarts=self.record.restarts)
        log.info("container.started", id=self.record.id[:12], holder=self.holder.pid)

    def _stdin(self) -> int | IO[Any] | None:
        """The command's stdin: ours, or for a detached ``-i`` run (stdin /dev/null) a pipe whose
        write end this supervisor holds for ``attach``, as conmon holds Podman's."""
        if not self.record.spec.interactive or self.stdio.stdin != subprocess.DEVNULL:
            return self.stdio.stdin
        read_end, self.stdin_fd = os.pipe()
        os.set_blocking(self.stdin_fd, False)
        return read_end

    async def _start_network(self, holder: Holder) -> None:
        """Start the network of a mode (pasta, slirp4netns, none, host) on *holder*; kept at once,
        so that a failure of what runs beside it still stops the helper (``_cleanup_run``)."""
        self.network = await start_network(self.record.spec, holder, self.bundle)

    async def _write_bundle(self, rootfs: Rootfs, layers: tuple[Path, ...]) -> bool:
        """Write the runtime's bundle (the mounts prepared first); whether the runtime runs in
        the holder's user namespace.

        Rootless, the runtime runs inside the holder's user namespace, where it is root: outside
        it (rootless runc) it cannot set the command's supplementary groups, which would then
        keep ours (the user's own group, which reads as group 0, root, inside). Real root
        keeps the runtime outside, where its cgroup writes are allowed.
        """
        assert self.holder is not None
        spec = self.record.spec
        in_userns = self.holder.userns and (os.geteuid() != 0 or rootfs.runtime_inside)
        extra_mounts = await anyio.to_thread.run_sync(prepare_mounts, self.root, spec, layers)
        write_bundle(self.bundle, spec, self.holder, rootfs.view(),
                     in_userns=in_userns, in_mountns=rootfs.runtime_inside,
                     extra_mounts=extra_mounts)
        return in_userns

    async def _join_network(self, rootfs: Rootfs) -> None:
        """Attach to the named network (its group started on demand), make the holder in its
        user namespace, give it eth0 on the bridge, and make every member's hosts file name it."""
        spec = self.record.spec
        self.attachment = att = await anyio.to_thread.run_sync(
            _netgroup.join, self.root, spec.network, self.record.id, self.record.name,
            list(dict.fromkeys([spec.hostname, *spec.network_aliases])), spec.host_loopback, spec.ip)
        self.holder = await start_holder(userns=True, netns=True, mountns=rootfs.needs_mountns,
                                         inside=att.holder_pid)
        await rootfs.prepare(self.holder)
        net = att.network.network
        host_address = att.run.get("host_address")
        where = Bridged(att.holder_pid, att.member.address, net.prefixlen, att.network.gateway,
                        att.run.get("helper"), host_address)
        self.network = await setup_bridged(spec, self.record.name, self.holder, self.bundle,
                                           rootfs.view(), where)
        if host_address is not None:
            await _netgroup.set_host_loopback(att.holder_pid, att.member.address, host_address,
                                              spec.host_loopback)
        await anyio.to_thread.run_sync(
            lambda: _netgroup.announce(self.root, att, rootfs.view() / "etc" / "hosts", keep=False))

    async def _watch_network(self, tg: TaskGroup, pidfd: int, message: str) -> None:
        await anyio.wait_readable(pidfd)
        self.end(Outcome(125, Reason.NETWORK_EXITED, message), tg)

    async def _join_container(self, rootfs: Rootfs, owner: str) -> None:
        """``--network container:OWNER``: a holder in the owner's user and network namespaces
        (new UTS and IPC ones), the owner's network files; its holder's end ends this group."""
        spec = self.record.spec
        if self.join_gate is not None and self.record.restarts:
            with anyio.move_on_after(300):  # a guard: the owner's own restart is bounded
                await _first_of(self.join_gate, self.stop_requested.wait)
            if self.stop_requested.is_set():
                raise CarrierError(f"--network container:{owner}: stopped while waiting for "
                                   "it to run again")
        try:
            cid = self.containers.resolve(owner)
            rec = self.containers.load(cid)
        except CarrierError as e:
            raise CarrierError(f"--network container:{owner}: {e}") from None
        if (rec.status is not Status.RUNNING or rec.holder_pid is None
                or not _process.same_process(rec.holder_pid, rec.holder_start)):
            raise CarrierError(f"--network container:{owner}: the container is not running")
        if rec.spec.network in ("host", "none") or rec.spec.network.startswith("container:"):
            raise CarrierError(f"--network container:{owner}: it has no network of its own to "
                               f"share (--network {rec.spec.network})")
        self.owner_pidfd = os.pidfd_open(rec.holder_pid)
        if not _process.same_process(rec.holder_pid, rec.holder_start):  # reused meanwhile
            raise CarrierError(f"--network container:{owner}: the container is not running")
        self.holder = await start_holder(userns=True, netns=True, mountns=rootfs.needs_mountns,
                                         inside=rec.holder_pid, share_net=True)
        await rootfs.prepare(self.holder)
        owner_pid = rec.container_pid
        watch = _netgroup.watch_hosts(owner_pid) if owner_pid else None
        if watch is not None and owner_pid:  # before the read: no later change is missed
            address = str((rec.network or {}).get("address") or "127.0.1.1").split("/")[0]
            own = f"{address}\t{' '.join(dict.fromkeys([spec.hostname, self.record.name]))}"
            self.owner_hosts = (watch, owner_pid, own)
        live = _netgroup.read_hosts(rec.container_pid) if rec.container_pid else None
        self.network = setup_joined(spec, self.record.name, self.bundle, rootfs.view(), owner,
                                    self.containers.dir(cid), rec.network or {}, live)

    async def _follow_owner_hosts(self, fd: int, owner_pid: int, own: str) -> None:
        """The owner's hosts file changed (a container joined or left its network): the
        joiner's follows, so that it names the network's members of the moment too."""
        while True:
            await anyio.wait_readable(fd)
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 65536)
            text, pid = _netgroup.read_hosts(owner_pid), self.record.container_pid
            if text is not None and pid is not None:
                hosts = _netgroup.joiner_hosts(text, own)
                await anyio.to_thread.run_sync(_netgroup.write_hosts, pid, hosts)

    async def _launch(self, streams: tuple[int | IO[Any] | None, ...], inside: list[str]) -> bool:
        """Have the runtime start the command; whether it runs. A runtime that failed before
        creating anything, in the way runc 1.1 rarely does (``transient_failure``), gets one
        more try with the same streams, which is why they stay open here until the end."""
        if self.on_launch is not None:  # the command is on its way
            self.on_launch()
        log_file = self.bundle / "runtime.log"
        running = await self._run_runtime(streams, inside)
        if running or not transient_failure(log_file):
            return running
        assert self.child is not None
        await self.child.wait()
        log.info("runtime.retry", id=self.record.id[:12],
                 error=log_file.read_text(errors="replace").strip()[-300:])
        await self.runtime.delete(self.record.id)
        for stream in (self.output, self.console):  # runc's error is not the container's
            if stream is not None:
                stream.discard()
        log_file.unlink(missing_ok=True)
        (self.bundle / "container.pid").unlink(missing_ok=True)
        return await self._run_runtime(streams, inside)

    async def _run_runtime(self, streams: tuple[int | IO[Any] | None, ...],
                           inside: list[str]) -> bool:
        """One start by the runtime, on *streams*: whether the command runs."""
        pid_file = self.bundle / "container.pid"
        self.child = self.runtime.run(
            self.record.id, self.bundle, stdin=streams[0], stdout=streams[1], stderr=streams[2],
            controlling_tty=self.console is not None, inside=inside, detach=self.detached)
        if self.detached:
            return await self._adopt(pid_file)
        return await self._command_running(pid_file) or pid_file.exists()

    async def _adopt(self, pid_file: Path) -> bool:
        """Wait for a detached runtime to exit; if it started the command, its init (ours now,
        as the subreaper) becomes the container process. Whether it did."""
        runtime = self.child
        assert isinstance(runtime, _process.Child)
        if await runtime.wait() != 0:
            return False
        return self._take_init(pid_file)

    def _take_init(self, pid_file: Path) -> bool:
        """Wait on the init that *pid_file* names from now on; False if there is none."""
        try:
            self.child = Init(int(pid_file.read_text()))
        except (OSError, ValueError):
            return False
        return True

    async def _command_running(self, pid_file: Path) -> bool:
        """Wait until the runtime reports the command exec'd (its PID file) or exits first."""
        assert self.child is not None
        child = self.child
        runtime_exited = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def watch_runtime() -> None:
                await child.wait()
                runtime_exited.set()

            tg.start_soon(watch_runtime)
            found = await wait_for_file(pid_file, give_up=runtime_exited)
            tg.cancel_scope.cancel()
        return found

    async def _watch_container(self, tg: TaskGroup) -> None:
        assert self.child is not None
        code = _process.exit_status(await self.child.wait())
        if self.console is not None:
            self.console.drain()  # the runtime has written all; the last of it is still here
        if self.output is not None:
            self.output.drain()
        failure = start_failure(self.bundle / "runtime.log") if code else None
        if failure is not None:
            self.end(Outcome(failure[0], Reason.RUNTIME_FAILED, failure[1]), tg)
        elif code > 128 and code - 128 in _signal.valid_signals():
            name = _signal.Signals(code - 128).name
            self.end(Outcome(code, Reason.KILLED, f"killed by {name}"), tg)
        else:
            self.end(Outcome(code, Reason.EXITED), tg)

    async def _watch_holder(self, tg: TaskGroup) -> None:
        assert self.holder is not None
        await self.holder.child.wait()
        self.end(Outcome(125, Reason.HOLDER_EXITED, "the namespace holder exited"), tg)

    async def _watch_storage(self, tg: TaskGroup, fuse: _process.Child) -> None:
        await fuse.wait()
        self.end(Outcome(125, Reason.STORAGE_EXITED, "fuse-overlayfs exited"), tg)

    async def _watch_helper(self, tg: TaskGroup) -> None:
        assert self.network is not None
        assert self.network.helper is not None
        helper = self.network.helper
        code = await helper.child.wait()
        message = f"the network helper {helper.name} exited (status {_process.exit_status(code)})"
        self.end(Outcome(125, Reason.HELPER_EXITED, message), tg)

    async def _forward_ports(self, tg: TaskGroup) -> None:
        assert self.network is not None
        assert self.holder is not None
        try:
            await self.network.forward_ports(self.holder)
        except Exception as e:  # the relays and the forwarder are members: their end ends the group
            message = str(e) if isinstance(e, CarrierError) else f"port forwarding failed: {e!r}"
            self.end(Outcome(125, Reason.HELPER_EXITED, message), tg)

    async def _watch_health(self, tg: TaskGroup, config: HealthConfig) -> None:
        async def probe(argv: list[str], out: IO[bytes]) -> int:
            if config.probe is not None:  # host-side: through the published port
                ok = await config.probe(Container(self))
                out.write(b"ok\n" if ok else f"{config.probe.description}: failed\n".encode())
                return 0 if ok else 1
            from .._runtime._exec import exec_in

            code = await exec_in(self.root, self.record, argv, output=out)
            if code != 0 and not await self.runtime.running(self.record.id):
                # The check died with the container: the container's own end is the cause,
                # and its watcher reports it.
                await anyio.sleep_forever()
            return code

        def changed(state: str | None) -> None:
            self.containers.save(self.record)
            if state is not None:
                self.event(state)

        await watch(config, self.record, probe, changed)
        message = f"unhealthy after {config.retries} failed checks of {describe(config)}"
        self.end(Outcome(0, Reason.UNHEALTHY, message), tg)

    async def _watch_restart(self, tg: TaskGroup) -> None:
        await self.restart_requested.wait()
        self.end(Outcome(0, Reason.RESTART_REQUESTED), tg)

    async def _watch_stop(self, tg: TaskGroup) -> None:
        await self.stop_requested.wait()
        self.end(Outcome(0, Reason.STOP_REQUESTED), tg)

    async def _stop_container(self) -> int | None:
        """SIGTERM once, wait the stop timeout (not when the init has no handler for it, so the
        kernel discarded it), then SIGKILL; return the exit status."""
        child = self.child
        if child is None:
            return None
        if self.detached and isinstance(child, _process.Child):  # the start was cut short
            with anyio.move_on_after(10):  # a guard: it exits once the command runs
                await child.wait()
            await child.kill()
            if not self._take_init(self.bundle / "container.pid"):
                return _process.exit_status(await child.wait())
            child = self.child
            assert child is not None
        if child.returncode is None:
            await self.runtime.kill(self.record.id, "TERM")
            term_sent = time.monotonic()
            # Checked after the send: a PID 1 with no TERM handler then had none when it came,
            # and the kernel dropped it; the timeout would end in SIGKILL all the same.
            init = self._init_pid(child)
            while child.returncode is None and not (
                    init is not None and _process.discards(init, _signal.SIGTERM)):
                remaining = term_sent + self.stop_timeout - time.monotonic()
                if remaining <= 0:
                    break
                self.hurry = anyio.Event()
                with anyio.move_on_after(remaining):
                    await _first_of(child.wait, self.hurry.wait)
        if child.returncode is None:
            await self.runtime.kill(self.record.id, "KILL")
            with anyio.move_on_after(5):
                await child.wait()
            if child.returncode is None:  # the runtime itself hangs: it must not outlive us
                await child.kill()
        assert child.returncode is not None
        return _process.exit_status(child.returncode)

    def _init_pid(self, child: _process.Child | Init) -> int | None:
        """The container's init: *child* once adopted, else the one ``runc run`` (still its
        parent, in the foreground) wrote in its PID file."""
        if isinstance(child, Init):
            return child.pid
        try:
            return int((self.bundle / "container.pid").read_text())
        except (OSError, ValueError):
            return None

    async def _cleanup_run(self) -> None:
        """Stop the container and release what this run held; record how it ended."""
        self.run_tg = None  # no connect from now on
        async with anyio.create_task_group() as relays:
            # What it writes while it stops (a SIGTERM trap's last words) is logged as it comes,
            # and a full pipe can never keep it from ending.
            for relay in (self.console, self.output):
                if relay is not None:
                    relays.start_soon(_relay_quietly, relay.relay)
            code = await self._stop_container()
            relays.cancel_scope.cancel()
        if self.console is not None:
            self.console.drain()
            self.console.close()
        if self.output is not None:
            self.output.drain()
            self.output.close()
        await self.runtime.delete(self.record.id)
        self.end_input()
        if self.network is not None:
            if self._network_outlives_exit():
                self.network_left = self.network
            else:
                await self.network.stop()
        if self.rootfs is not None:
            await self.rootfs.release()
        if self.holder is not None:
            await self.holder.stop()
        reap_orphans()  # what the runtime and fuse-overlayfs left to us, now all ended
        await self.release_connected()
        if self.attachment is not None:
            await anyio.to_thread.run_sync(_netgroup.leave, self.root, self.attachment)
            self.attachment = None
        if self.owner_pidfd is not None:
            os.close(self.owner_pidfd)
            self.owner_pidfd = None
        if self.owner_hosts is not None:
            os.close(self.owner_hosts[0])
            self.owner_hosts = None
        outcome = self.outcome or Outcome(125, Reason.START_FAILED, "cancelled")
        stopped_by_us = (Reason.STOP_REQUESTED, Reason.UNHEALTHY, Reason.RESTART_REQUESTED)
        if outcome.reason in stopped_by_us and code is not None:
            outcome = Outcome(code, outcome.reason, outcome.message)  # the status the stop gave
        self.outcome = outcome
        self.record.transition(Status.EXITED)
        self.record.finished = now()
        self.record.exit_code = outcome.exit_code
        self.record.reason = str(outcome.reason) + (f": {outcome.message}" if outcome.message else "")
        self.record.holder_pid = None
        self.containers.save(self.record)
        self.event("exited", exit_code=outcome.exit_code, reason=str(outcome.reason))

    def _network_outlives_exit(self) -> bool:
        """Whether the container's own network helper is stopped only once the group is cleaned
        (*helper_last*: a foreground run reports its exit then): a ``--rm`` container without
        published ports, whose helper nothing can observe once its record is gone (no port it
        holds, no file named by a record, no restart: ``--rm`` refuses ``--restart``). Stopping
        pasta takes ~30 ms (docs/performance.md); the helper still dies with this process
        (``--pdeathsig``, the exit pipe) if it is killed meanwhile."""
        return self.helper_last and self.record.spec.remove and not self.record.spec.ports

    async def _finish(self) -> None:
        """After the last run: the final outcome, a ``--rm`` removal (in a worker thread: a
        keeper's other containers go on meanwhile), the lock released."""
        try:
            outcome = self.outcome or Outcome(125, Reason.START_FAILED, "cancelled")
            if self.gave_up:
                outcome = Outcome(outcome.exit_code, outcome.reason,
                                  "; ".join(filter(None, [outcome.message, self.gave_up])))
                self.record.reason = f"{self.record.reason}; {self.gave_up}"
            self.final = outcome
            if self.log is not None:
                self.log.close()
            if self.record.spec.remove:
                self.last_lines = self.log.last_lines() if self.log is not None else []
                await anyio.to_thread.run_sync(self.containers.remove, self.record)
            else:
                self.containers.save(self.record)
            self.event("cleaned", exit_code=outcome.exit_code)
            log.info("container.cleaned", exit_code=outcome.exit_code, reason=str(outcome.reason))
        finally:
            os.close(self.lock_fd)
            self.cleaned.set()


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of *waits* is done; the others are cancelled."""
    async with anyio.create_task_group() as tg:

        async def one(w: Callable[[], Awaitable[object]]) -> None:
            await w()
            tg.cancel_scope.cancel()

        for w in waits:
            tg.start_soon(one, w)


async def supervise(
    root: Root, record: Record, lock_fd: int, stdio: Stdio, *,
    health_probe: Check | None = None,
    on_running: Callable[[Container], None] | None = None,
    on_launch: Callable[[], None] | None = None,
    helper_last: bool = False,
    task_status: TaskStatus[Container] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run *record*'s container under supervision until it ends and is cleaned up.

    Reports a :class:`Container` handle through *task_status* once the command is started, and
    calls *on_running* with it at that very moment, before any other task runs (each run);
    *on_launch* is called when the runtime has been asked to start the command, a moment
    before.
    *health_probe* is a host-side health check (the spec's interval, retries and action).
    *helper_last*: a ``--rm`` container without published ports has its network helper stopped
    after the group is cleaned, so that :meth:`Container.wait` returns (and the caller reports
    the exit) before it.

    **Cancellation:** the container is stopped gracefully (SIGTERM, stop timeout, SIGKILL) and
    everything it held is released before the cancellation propagates.
    """
    _process.raise_fd_limit()
    try:
        group = _Group(root, record, lock_fd, stdio, health_probe, on_running, on_launch,
                       helper_last)
    except BaseException:
        os.close(lock_fd)  # nobody else will: in a keeper the lock would stay held for ever
        raise
    await group.run(task_status=task_status)


async def _relay_quietly(relay: Callable[[], Awaitable[None]]) -> None:
    """Run *relay* while the container stops; a failure to copy must not cut the stop short
    (the drain after it reports nothing either: the output is in the log)."""
    try:
        await relay()
    except Exception as e:
        log.debug("container.output.lost", error=repr(e))
