"""``carrier run``: a container supervised in the foreground, or by a supervisor forked into the
background with ``-d``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import Parameter

from .._runtime._terminal import DEFAULT_DETACH_KEYS, parse_detach_keys, saved_terminal
from .._util._errors import CarrierError
from .._util._signals import FORWARDED, held, name
from ._common import in_background, one_line, open_root
from ._options import EnvOption, UserOption, WorkdirOption
from ._running import Running, stop_on_sigterm
from ._settings import parse_labels, read_env_files

if TYPE_CHECKING:
    from .._state._records import Record
    from .._supervision._handle import Container, Outcome, Stdio
    from .._util._root import Root


exit_reporter: Callable[[int], None] | None = None
"""Set by the fork server's command (``_zygote._command``): hands a foreground run's exit code
to its waiting caller as soon as the group is cleaned, so that the caller does not wait for
what no longer concerns it (a ``--rm`` run's network helper, stopped after, ``_group``)."""


def run(
    image: str,
    *command: str,
    rm: bool = False,
    detach: Annotated[bool, Parameter(name=["-d", "--detach"])] = False,
    interactive: Annotated[bool, Parameter(name=["-i", "--interactive"])] = False,
    tty: Annotated[bool, Parameter(name=["-t", "--tty"])] = False,
    name: str | None = None,
    env: EnvOption = None,
    env_file: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    label: Annotated[list[str] | None, Parameter(name=["-l", "--label"],
                                                 consume_multiple=False)] = None,
    init: bool = False,
    workdir: WorkdirOption = None,
    user: UserOption = None,
    hostname: Annotated[str | None, Parameter(name=["-h", "--hostname"])] = None,
    entrypoint: str | None = None,
    runtime: str = "runc",
    storage_driver: str | None = None,
    pull: Literal["missing", "always", "never"] = "missing",
    platform: str | None = None,
    stop_timeout: str = "10s",
    publish: Annotated[list[str] | None, Parameter(name=["-p", "--publish"], consume_multiple=False)] = None,
    publish_all: Annotated[bool, Parameter(name=["-P", "--publish-all"])] = False,
    network: str = "auto",
    network_alias: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    ip: str | None = None,
    no_network: bool = False,
    elevated: bool = False,
    host_loopback: bool = False,
    mtu: int | None = None,
    dns: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    dns_search: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    dns_option: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    add_host: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    volume: Annotated[list[str] | None, Parameter(name=["-v", "--volume"], consume_multiple=False)] = None,
    mount: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    tmpfs: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    read_only: bool = False,
    read_only_tmpfs: bool = True,
    restart: str = "no",
    restart_delay: str = "100ms",
    restart_max_delay: str = "10s",
    restart_intensity: int = 5,
    restart_period: str = "10s",
    health_cmd: str | None = None,
    health_interval: str = "30s",
    health_timeout: str = "30s",
    health_retries: int = 3,
    health_start_period: str = "0s",
    health_on_failure: Literal["none", "kill", "restart"] = "none",
    log_opt: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    cap_add: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    cap_drop: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    privileged: bool = False,
    security_opt: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    ulimit: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    pids_limit: int | None = None,
    memory: Annotated[str | None, Parameter(name=["-m", "--memory"])] = None,
    cpus: float | None = None,
    detach_keys: str = DEFAULT_DETACH_KEYS,
) -> int:
    """Run a command in a new container.

    Parameters
    ----------
    image: str
        Image name, id or id prefix.
    command: str
        The command and its arguments (default: the image's).
    rm: bool
        Remove the container when it exits.
    detach: bool
        Run in the background and print the container id.
    interactive: bool
        Pass standard input to the container.
    tty: bool
        Give the container a pseudo-terminal (-it: a real terminal session, as in Docker).
    name: str | None
        Name the container (default: its short id).
    env_file: list[str] | None
        Read environment variables from a file, one KEY=VALUE a line, as Docker (repeatable).
    label: list[str] | None
        Set a label, KEY=VALUE (repeatable); ps --filter label= and info show it.
    init: bool
        Run catatonit (found on PATH) as PID 1, forwarding signals and reaping orphans.
    hostname: str | None
        Container hostname (default: its name).
    entrypoint: str | None
        Replace the image's entrypoint.
    runtime: str
        OCI runtime: runc, crun or a path.
    storage_driver: str | None
        overlay, fuse-overlayfs or copy (default: the first that works here; see carrier info).
    pull: str
        Pull the image: missing (when it is not stored), always, or never.
    platform: str | None
        The platform to pull, os/arch[/variant] (default: the host's).
    stop_timeout: str
        Time between SIGTERM and SIGKILL on stop (10s, 500ms, 1m30s, or seconds).
    publish: list[str] | None
        Publish a port: [[HOST_IP:][HOST_PORT]:]CONTAINER_PORT[/tcp|udp], ranges allowed; no
        host port: a free one (repeatable).
    publish_all: bool
        Publish each port the image exposes on a free host port.
    network: str
        auto (pasta, else slirp4netns), pasta, slirp4netns, none (loopback only), host, or the
        name of a network (carrier network create).
    network_alias: list[str] | None
        Another name of this container on its named network (repeatable).
    ip: str | None
        A fixed IPv4 address on the named network (inside its subnet, not taken).
    no_network: bool
        Loopback only, no helper (the same as --network none).
    elevated: bool
        Share the host's network namespace (needs root; the same as --network host).
    host_loopback: bool
        Let the container reach the host's loopback as host.containers.internal.
    mtu: int | None
        MTU of the container's interface (1280 to 65520; default: the helper's, 65520).
    dns: list[str] | None
        Nameserver for the container's resolv.conf (repeatable; replaces the host's).
    dns_search: list[str] | None
        Search domain (repeatable).
    dns_option: list[str] | None
        resolv.conf option (repeatable).
    add_host: list[str] | None
        Add NAME:IP to the container's /etc/hosts (repeatable).
    volume: list[str] | None
        Bind a host path or mount a named volume: HOST|NAME:CONTAINER[:ro|rw] (repeatable).
    mount: list[str] | None
        Mount type=bind|volume|tmpfs,src=SOURCE,dst=PATH[,ro] (repeatable).
    tmpfs: list[str] | None
        Mount a tmpfs: PATH[:OPTIONS] (repeatable; nosuid,nodev,noexec unless OPTIONS say).
    read_only: bool
        Make the root filesystem read-only.
    read_only_tmpfs: bool
        With --read-only, keep /run, /tmp and /var/tmp writable tmpfs (default: true; =false to turn off).
    restart: str
        Restart policy: no, on-failure[:N], always or unless-stopped.
    restart_delay: str
        Time before the first restart; the delay doubles for each one after.
    restart_max_delay: str
        Cap on the delay between restarts.
    restart_intensity: int
        Give up after more than this many restarts within --restart-period.
    restart_period: str
        The window for --restart-intensity.
    health_cmd: str | None
        Command (run with /bin/sh -c inside) whose exit status 0 means healthy.
    health_interval: str
        Time between checks (30s, 500ms, 1m30s).
    health_timeout: str
        Time one check may take.
    health_retries: int
        Consecutive failures that make the container unhealthy.
    health_start_period: str
        Failures during this time after the start do not count.
    health_on_failure: str
        When unhealthy: none (record it), kill (stop; the restart policy decides), restart.
    log_opt: list[str] | None
        Log option, as Docker's json-file: max-size=SIZE (rotate at 10m, 512k, ...), max-file=N (repeatable).
    cap_add: list[str] | None
        Add a capability to Podman's default set: NET_RAW, CAP_SYS_ADMIN, ALL (repeatable).
    cap_drop: list[str] | None
        Drop a capability: CHOWN, CAP_KILL, ALL (repeatable).
    privileged: bool
        Every capability of the container's user namespace, no seccomp filter, unmasked /proc,
        and the host devices this user can open.
    security_opt: list[str] | None
        no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json (repeatable).
    ulimit: list[str] | None
        Resource limit NAME=SOFT[:HARD], e.g. nofile=1024:2048 (repeatable; -1: unlimited).
    pids_limit: int | None
        Most processes the container may have (needs a cgroup: root only here).
    memory: str | None
        Memory limit, e.g. 512m or 1g (needs a cgroup: root only here).
    cpus: float | None
        CPUs the container may use, e.g. 1.5 (needs a cgroup: root only here).
    detach_keys: str
        The keys that detach: ctrl-<x> and single characters, comma-separated ("" disables);
        checked here, used by attach (a foreground -it run passes them on to the container).
    """
    return launch(dict(locals()), create_only=False)


def launch(options: dict[str, Any], *, create_only: bool) -> int:
    """``run``, or ``create`` (*create_only*: the container is stored, not started), from the
    options of :func:`run` by name: the one path from a command line to a container."""
    o = options
    parse_detach_keys(o.get("detach_keys", DEFAULT_DETACH_KEYS))  # bad keys: refused up front
    image, command, detach, interactive, tty = (o["image"], o["command"], o["detach"],
                                                o["interactive"], o["tty"])
    if o["no_network"] and o["elevated"]:
        raise CarrierError("--no-network and --elevated contradict each other")
    mode = "none" if o["no_network"] else "host" if o["elevated"] else o["network"]
    if not create_only:
        _check_tty(tty, interactive=interactive, detach=detach)
    (name, env, workdir, user, hostname, entrypoint, runtime, storage_driver, pull, platform,
     stop_timeout, rm, publish, host_loopback, mtu, dns, dns_search, dns_option, add_host,
     volume, mount, tmpfs, read_only, read_only_tmpfs, restart, restart_delay, restart_max_delay,
     restart_intensity, restart_period, health_cmd, health_interval, health_timeout,
     health_retries, health_start_period, health_on_failure, env_file, label, init) = (o[k] for k in (
        "name", "env", "workdir", "user", "hostname", "entrypoint", "runtime", "storage_driver",
        "pull", "platform", "stop_timeout", "rm", "publish", "host_loopback", "mtu", "dns",
        "dns_search", "dns_option", "add_host", "volume", "mount", "tmpfs", "read_only",
        "read_only_tmpfs", "restart", "restart_delay", "restart_max_delay", "restart_intensity",
        "restart_period", "health_cmd", "health_interval", "health_timeout", "health_retries",
        "health_start_period", "health_on_failure", "env_file", "label", "init"))
    publish_all = o["publish_all"]
    if o.get("ip") is not None:
        _check_ip(mode, o["ip"])
    env = [*read_env_files(env_file or []), *(env or [])]  # -e wins, as in Docker
    return _run(
        image, list(command), create_only=create_only, detach=detach, interactive=interactive,
        tty=tty, name=name,
        env=env, labels=parse_labels(label or []), init=init, workdir=workdir, user=user,
        hostname=hostname, publish_all=publish_all,
        entrypoint=_entrypoint(entrypoint), runtime=runtime,
        storage_driver=storage_driver, pull=pull, platform=platform,
        stop_timeout=stop_timeout, remove=rm, network=mode, ports=publish or [],
        network_aliases=o["network_alias"] or [], ip=o.get("ip"),
        host_loopback=host_loopback, mtu=mtu, dns=dns or [], dns_search=dns_search or [],
        dns_option=dns_option or [], add_host=add_host or [], volumes=volume or [],
        mounts=mount or [], tmpfs=tmpfs or [], read_only=read_only,
        read_only_tmpfs=read_only_tmpfs, restart=restart,
        restart_delay=restart_delay, restart_max_delay=restart_max_delay,
        restart_intensity=restart_intensity, restart_period=restart_period,
        health_cmd=health_cmd, health_interval=health_interval, health_timeout=health_timeout,
        health_retries=health_retries, health_start_period=health_start_period,
        health_on_failure=health_on_failure, log_opt=o.get("log_opt") or [],
        cap_add=o.get("cap_add") or [], cap_drop=o.get("cap_drop") or [],
        privileged=o.get("privileged", False), security_opt=o.get("security_opt") or [],
        ulimit=o.get("ulimit") or [], pids_limit=o.get("pids_limit"), memory=o.get("memory"),
        cpus=o.get("cpus"),
    )


def _check_ip(network: str, ip: str) -> None:
    """``--ip``: an address of a named network's subnet that no attached container has."""
    from .._network._options import MODES
    from .._supervision._netgroup import check_address

    if network in MODES or network.startswith("container:"):
        raise CarrierError(f"--ip gives an address on a named network: not with --network {network}")
    check_address(open_root(), network, ip)


def _check_tty(tty: bool, *, interactive: bool, detach: bool) -> None:
    """``-it`` passes this terminal's input to the container's: there must be one."""
    if tty and interactive and not detach and not os.isatty(0):
        raise CarrierError("the input device is not a TTY (drop -t, or run from a terminal)")


def _entrypoint(text: str | None) -> list[str] | None:
    """``--entrypoint``: None keeps the image's; ``""`` clears it (then the image's Cmd is not
    used either, as in Podman: the command line gives the whole command)."""
    if text is None:
        return None
    return [text] if text else []


def _run(image: str, command: list[str], *, create_only: bool, detach: bool,
         interactive: bool, name: str | None, env: list[str], workdir: str | None,
         user: str | None, hostname: str | None, entrypoint: list[str] | None,
         pull: str = "missing", platform: str | None = None, **settings: Any) -> int:
    """Create the container, then supervise it here or in a forked background supervisor
    (*create_only*: print its id and leave it created, for ``start``)."""
    from .._images._ensure import ensure_image_sync
    from .._supervision._create import create

    root = open_root()
    ensure_image_sync(root, image, pull, platform)
    # From here until a receiver listens, signals wait: none can cut the record's writing in two,
    # and one that comes before the command runs ends the start cleanly (see _foreground).
    with held():
        record, lock = create(
            root, image, command, name=name, entrypoint=entrypoint, env=env, workdir=workdir,
            user=user, hostname=hostname, detach=detach, interactive=interactive, **settings,
        )
        if create_only:
            os.close(lock)
            print(record.id)
            return 0
        if detach:
            return run_detached(root, record, lock)
        return supervise_here(root, record, lock, interactive=interactive)


def supervise_here(root: Root, record: Record, lock: int, *, interactive: bool) -> int:
    """Run *record*'s container supervised by this process, its output on ours; its exit
    code. The caller holds the signals (:func:`held`) and the container's lock *lock*."""
    import anyio

    from .._supervision._handle import Stdio

    stdin = None if interactive else subprocess.DEVNULL
    reported: list[int] = []

    def cleaned(outcome: Outcome) -> None:
        """The container is gone and its group cleaned: the caller may have its code now."""
        assert exit_reporter is not None
        reported.append(_report(outcome))
        exit_reporter(reported[0])

    # With a terminal, the code goes only once ours is restored: at the end.
    early = cleaned if exit_reporter is not None and not record.spec.tty else None
    with _terminal_for(record.spec.tty, interactive):
        outcome: Outcome = anyio.run(_foreground, root, record, lock, Stdio(stdin=stdin), early)
    return reported[0] if reported else _report(outcome)


@contextlib.contextmanager
def _terminal_for(tty: bool, interactive: bool) -> Iterator[None]:
    """Our terminal during a ``-t`` run, restored on every way out (a crash or a kill of the
    runtime included). With ``-it`` the runtime puts it in raw mode and relays it; with ``-t``
    alone the output comes from the container's own terminal (``\\r\\n`` already), so ours
    stops adding carriage returns, while Ctrl-C still reaches Carrier (and the container)."""
    if not tty:
        yield
        return
    fd = 0 if interactive else 1
    with saved_terminal(fd):
        if not interactive and os.isatty(fd):
            attrs = termios.tcgetattr(fd)
            attrs[1] &= ~termios.OPOST
            termios.tcsetattr(fd, termios.TCSADRAIN, attrs)
        yield


def _report(outcome: Outcome) -> int:
    from .._supervision._handle import Reason

    # The runtime already printed its own failure on the container's stderr.
    if (outcome.exit_code == 125 and outcome.reason is not Reason.RUNTIME_FAILED) or (
            outcome.reason is Reason.START_FAILED and outcome.exit_code > 128):
        print(f"carrier: {outcome.message or outcome.reason}", file=sys.stderr)
    return outcome.exit_code


async def _foreground(root: Root, record: Record, lock: int, stdio: Stdio,
                      cleaned: Callable[[Outcome], None] | None) -> Outcome:
    """Supervise in this process, passing every catchable signal on to the container (see
    :class:`_Proxy`); return how the container ended. *cleaned*, if given, gets the outcome as
    soon as the group is cleaned, before what is left to stop once nothing observes it (the
    helper of a ``--rm`` run, ``supervise``'s *helper_last*)."""
    from functools import partial

    import anyio

    from .._runtime._reaper import become_subreaper
    from .._supervision._group import supervise
    from .._supervision._handle import Outcome, Reason
    from .._util._errors import unwrapped

    become_subreaper()  # the runtime need not stay: its container's init is ours (_reaper)

    with anyio.open_signal_receiver(*FORWARDED) as signals, unwrapped():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # held since before create
        async with anyio.create_task_group() as tg:
            proxy = _Proxy(tg.cancel_scope)
            tg.start_soon(proxy.run, signals)
            container: Container = await tg.start(
                partial(supervise, on_running=proxy.started, on_launch=proxy.launched,
                        helper_last=cleaned is not None),
                root, record, lock, stdio)
            outcome = await container.wait()
            if cleaned is not None:
                cleaned(outcome)
            tg.cancel_scope.cancel()
    if proxy.interrupted is not None:  # the start was given up: the group is cleaned already
        sig = proxy.interrupted
        return Outcome(128 + sig, Reason.START_FAILED,
                       f"interrupted by {name(sig)} before the command started")
    return outcome


class _Proxy:
    """A foreground run's signals, as ``docker run``'s sig-proxy passes them on.

    Before the runtime is asked to start the command, SIGINT, SIGTERM, SIGHUP or SIGQUIT ends
    the start (the group cleans up as always); after that, and for any other signal, it waits
    for the command. Once it runs: a first
    SIGINT (Ctrl-C) goes to the container and a second one kills it, SIGTERM stops it gracefully
    (SIGTERM, the stop timeout, SIGKILL), and every other signal goes to it as it is, in the
    order they came.
    """

    _ENDS_START = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

    def __init__(self, start_scope: Any) -> None:
        import anyio

        self._start_scope = start_scope
        self._container: Container | None = None
        self._launched = False
        self._running = anyio.Event()
        self._interrupts = 0
        self.interrupted: int | None = None
        self._send, self._queue = anyio.create_memory_object_stream[int](256)

    def launched(self) -> None:
        """The runtime is starting the command: signals wait for it from now on."""
        self._launched = True

    def started(self, container: Container) -> None:
        """The command runs: signals go to it from now on (called by the supervisor)."""
        self._container = container
        self._running.set()

    async def run(self, signals: Any) -> None:
        """Handle each signal as it comes (a member of the foreground's task group)."""
        import anyio

        async with anyio.create_task_group() as tg:
            tg.start_soon(self._deliver_in_order)
            async for sig in signals:
                if not self._launched and sig in self._ENDS_START:
                    self.interrupted = sig
                    self._start_scope.cancel()
                else:  # delivered once the command runs; a storm beyond the buffer is dropped
                    with contextlib.suppress(anyio.WouldBlock):
                        self._send.send_nowait(sig)

    async def _deliver_in_order(self) -> None:
        await self._running.wait()
        async for sig in self._queue:
            assert self._container is not None
            if sig == signal.SIGTERM:
                self._container.stop()
            elif sig == signal.SIGINT and self._interrupts > 0:
                self._container.stop(0)
            elif sig == signal.SIGWINCH and self._container.has_terminal:
                self._container.resize()  # the runtime copies our size to the container's PTY
            else:
                self._interrupts += sig == signal.SIGINT
                await self._container.signal(sig)


def run_detached(root: Root, record: Record, lock: int, shown: str | None = None) -> int:
    """Hand the container to this user's keeper (``_keeper``; a supervisor process of its own
    when none can take it); print the id (or *shown*) once the command runs."""
    from .._state._records import Containers
    from . import _keeper

    log = Containers(root).dir(record.id) / "supervisor.log"
    message = _keeper.submit(log, _detached_group, (root, record), (lock,))
    if message is None:
        message = in_background(log, _supervise_detached, root, record, fds=(lock,))
    os.close(lock)
    if message != "started":
        raise CarrierError(message or "the detached supervisor failed to start the container")
    while signal.sigtimedwait(FORWARDED, 0) is not None:
        pass  # what came while we waited: the container runs, detached, as asked
    print(record.id if shown is None else shown)
    return 0


def _supervise_detached(root: Root, record: Record, lock: int, status_fd: int) -> None:
    """A detached supervisor process's whole life (module-level: the fork server pickles it by
    name): the same group as in the keeper, and SIGTERM stops it."""
    import anyio

    anyio.run(_detached, root, record, lock, status_fd)


async def _detached(root: Root, record: Record, lock: int, status_fd: int) -> None:
    import anyio

    from .._runtime._reaper import become_subreaper, reap_on_sigchld

    become_subreaper()  # the runtime need not stay: its container's init is ours (_reaper)

    # Handled, not ignored: an ignored signal would stay ignored in every process started here.
    # Every catchable signal is handled, so that no stray one ends a supervisor without its
    # cleanup; only SIGTERM means something (stop).
    running = Running()
    with anyio.open_signal_receiver(*FORWARDED) as signals:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)  # held since before create
        async with anyio.create_task_group() as tg:
            tg.start_soon(stop_on_sigterm, signals, running)
            tg.start_soon(reap_on_sigchld)  # as the keeper does: it may live long (restarts)
            await _detached_group(running, root, record, lock, status_fd)
            tg.cancel_scope.cancel()


async def _detached_group(running: Running, root: Root, record: Record, lock: int,
                          status_fd: int) -> None:
    """Supervise the container with no output but its log; "started" (or why not) on
    *status_fd*; in *running* while it runs. A detached supervisor's or the keeper's work
    (module-level: pickled by name)."""
    import anyio

    from .._supervision._group import supervise
    from .._supervision._handle import Stdio
    from .._util._errors import unwrapped

    with os.fdopen(status_fd, "wb") as status:
        try:
            with unwrapped():
                async with anyio.create_task_group() as tg:
                    container: Container = await tg.start(
                        supervise, root, record, lock,  # the output goes to the log only
                        Stdio(subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
                    )
                    status.write(b"started")
                    status.close()
                    running.add(container)
                    try:
                        await container.wait()
                    finally:
                        running.discard(container)
                    tg.cancel_scope.cancel()
        except BaseException as e:
            if not status.closed:
                status.write(one_line(e).encode())
            raise
