"""``carrier run``: a container supervised in the foreground, or by a supervisor forked into the
background with ``-d``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import IO, TYPE_CHECKING, Annotated, Any, Literal

from cyclopts import Parameter

from .._util._durations import parse_duration
from .._util._errors import CarrierError
from ._common import in_background, one_line, open_root
from ._options import EnvOption, UserOption, WorkdirOption

if TYPE_CHECKING:
    from .._state._records import Record
    from .._supervision._group import Container, Outcome, Stdio
    from .._util._root import Root


def run(
    image: str,
    *command: str,
    rm: bool = False,
    detach: Annotated[bool, Parameter(name=["-d", "--detach"])] = False,
    interactive: Annotated[bool, Parameter(name=["-i", "--interactive"])] = False,
    name: str | None = None,
    env: EnvOption = None,
    workdir: WorkdirOption = None,
    user: UserOption = None,
    hostname: Annotated[str | None, Parameter(name=["-h", "--hostname"])] = None,
    entrypoint: str | None = None,
    runtime: str = "runc",
    storage_driver: str | None = None,
    pull: Literal["missing", "always", "never"] = "missing",
    platform: str | None = None,
    stop_timeout: float = 10.0,
    publish: Annotated[list[str] | None, Parameter(name=["-p", "--publish"], consume_multiple=False)] = None,
    network: str = "auto",
    no_network: bool = False,
    elevated: bool = False,
    host_loopback: bool = False,
    mtu: int | None = None,
    dns: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    dns_search: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    dns_option: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    add_host: Annotated[list[str] | None, Parameter(consume_multiple=False)] = None,
    restart: str = "no",
    restart_delay: float = 0.1,
    restart_max_delay: float = 10.0,
    restart_intensity: int = 5,
    restart_period: float = 10.0,
    health_cmd: str | None = None,
    health_interval: str = "30s",
    health_timeout: str = "30s",
    health_retries: int = 3,
    health_start_period: str = "0s",
    health_on_failure: Literal["none", "kill", "restart"] = "none",
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
    name: str | None
        Name the container (default: its short id).
    env: list[str] | None
        Set an environment variable, KEY=VALUE (repeatable).
    workdir: str | None
        Working directory inside the container.
    user: str | None
        User (name or uid[:gid]) to run as inside the container.
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
    stop_timeout: float
        Seconds between SIGTERM and SIGKILL on stop.
    publish: list[str] | None
        Publish a port: [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp], ranges allowed (repeatable).
    network: str
        auto (pasta, else slirp4netns), pasta, slirp4netns, none (loopback only) or host.
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
    restart: str
        Restart policy: no, on-failure[:N], always or unless-stopped.
    restart_delay: float
        Seconds before the first restart; the delay doubles for each one after.
    restart_max_delay: float
        Cap on the delay between restarts.
    restart_intensity: int
        Give up after more than this many restarts within --restart-period seconds.
    restart_period: float
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
    """
    if no_network and elevated:
        raise CarrierError("--no-network and --elevated contradict each other")
    mode = "none" if no_network else "host" if elevated else network
    return _run(
        image, list(command), detach=detach, interactive=interactive, name=name,
        env=env or [], workdir=workdir, user=user, hostname=hostname,
        entrypoint=[entrypoint] if entrypoint is not None else None, runtime=runtime,
        storage_driver=storage_driver, pull=pull, platform=platform,
        stop_timeout=stop_timeout, remove=rm, network=mode, ports=publish or [],
        host_loopback=host_loopback, mtu=mtu, dns=dns or [], dns_search=dns_search or [],
        dns_option=dns_option or [], add_host=add_host or [], restart=restart,
        restart_delay=restart_delay, restart_max_delay=restart_max_delay,
        restart_intensity=restart_intensity, restart_period=restart_period,
        health_cmd=health_cmd, health_interval=parse_duration(health_interval),
        health_timeout=parse_duration(health_timeout), health_retries=health_retries,
        health_start_period=parse_duration(health_start_period), health_on_failure=health_on_failure,
    )


def _run(image: str, command: list[str], *, detach: bool, interactive: bool,
         name: str | None, env: list[str], workdir: str | None, user: str | None,
         hostname: str | None, entrypoint: list[str] | None, pull: str = "missing",
         platform: str | None = None, **settings: Any) -> int:
    """Create the container, then supervise it here or in a forked background supervisor."""
    import anyio

    from .._images._ensure import ensure_image_sync
    from .._supervision._create import create
    from .._supervision._group import Stdio

    root = open_root()
    ensure_image_sync(root, image, pull, platform)
    record, lock = create(
        root, image, command, name=name, entrypoint=entrypoint, env=env, workdir=workdir,
        user=user, hostname=hostname, detach=detach, **settings,
    )
    if detach:
        return _detach(root, record, lock)
    stdin = None if interactive else subprocess.DEVNULL
    outcome: Outcome = anyio.run(_foreground, root, record, lock, Stdio(stdin=stdin))
    return _report(outcome)


def _report(outcome: Outcome) -> int:
    from .._supervision._group import Reason

    # The runtime already printed its own failure on the container's stderr.
    if outcome.exit_code == 125 and outcome.reason is not Reason.RUNTIME_FAILED:
        print(f"carrier: {outcome.message or outcome.reason}", file=sys.stderr)
    return outcome.exit_code


async def _foreground(root: Root, record: Record, lock: int, stdio: Stdio) -> Outcome:
    """Supervise in this process; Ctrl-C is forwarded, a second one kills, SIGTERM stops."""
    import anyio

    from .._supervision._group import supervise
    from .._util._errors import unwrapped

    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals, unwrapped():
        async with anyio.create_task_group() as tg:
            container: Container = await tg.start(supervise, root, record, lock, stdio)
            tg.start_soon(_handle_signals, signals, container)
            outcome = await container.wait()
            tg.cancel_scope.cancel()
    return outcome


async def _handle_signals(signals: Any, container: Container) -> None:
    interrupts = 0
    async for sig in signals:
        if sig == signal.SIGTERM:
            container.stop()
        elif interrupts == 0:
            interrupts += 1
            await container.signal(signal.SIGINT)
        else:
            container.stop(0)


def _detach(root: Root, record: Record, lock: int) -> int:
    """Fork a supervisor into its own session; print the id once the command runs."""
    import anyio

    from .._state._records import Containers

    cdir = Containers(root).dir(record.id)

    def work(status_fd: int) -> None:
        with open(cdir / "container.log", "ab") as log:
            anyio.run(_detached, root, record, lock, log, status_fd)

    message = in_background(cdir / "supervisor.log", work)
    os.close(lock)
    if message != "started":
        raise CarrierError(message or "the detached supervisor failed to start the container")
    print(record.id)
    return 0


async def _detached(root: Root, record: Record, lock: int, log: IO[bytes], status_fd: int) -> None:
    import anyio

    from .._supervision._group import Stdio, supervise
    from .._util._errors import unwrapped

    # Handled, not ignored: an ignored signal would stay ignored in every process started here.
    received = anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    with os.fdopen(status_fd, "wb") as status, received as signals:
        try:
            with unwrapped():
                async with anyio.create_task_group() as tg:
                    container: Container = await tg.start(
                        supervise, root, record, lock, Stdio(subprocess.DEVNULL, log, log)
                    )
                    status.write(b"started")
                    status.close()
                    tg.start_soon(_stop_on_sigterm, signals, container)
                    await container.wait()
                    tg.cancel_scope.cancel()
        except BaseException as e:
            if not status.closed:
                status.write(one_line(e).encode())
            raise


async def _stop_on_sigterm(signals: Any, container: Container) -> None:
    async for sig in signals:
        if sig == signal.SIGTERM:  # SIGINT and SIGHUP mean nothing to a detached supervisor
            container.stop()
