"""The library entry point: run a supervised container from any anyio program."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from .._images._ensure import ensure_image
from .._supervision._control import reconcile
from .._supervision._create import create
from .._supervision._group import supervise
from .._supervision._handle import Container, Stdio
from .._supervision._ready import Condition
from .._util import _process
from .._util._errors import unwrapped
from .._util._root import Root
from ._network import Network, NetworkName, for_run
from ._options import (
    Env,
    HealthAction,
    NetworkMode,
    Ports,
    Pull,
    StorageDriver,
    check_choice,
    check_flag,
    env_items,
    port_specs,
    strings,
)


@asynccontextmanager
async def run(
    image: str,
    command: Sequence[str] = (),
    *,
    name: str | None = None,
    env: Env | None = None,
    workdir: str | None = None,
    user: str | None = None,
    hostname: str | None = None,
    entrypoint: Sequence[str] | None = None,
    remove: bool = True,
    root: Path | str | None = None,
    stdio: Stdio | None = None,
    ports: Ports | None = None,
    wait_for: Condition | None = None,
    wait_timeout: float = 60.0,
    health: Condition | None = None,
    pull: Pull = "missing",
    storage_driver: StorageDriver | None = None,
    runtime: str | None = None,
    network: NetworkMode | Network | NetworkName | None = None,
    network_aliases: Sequence[str] | None = None,
    dns: Sequence[str] | None = None,
    dns_search: Sequence[str] | None = None,
    dns_option: Sequence[str] | None = None,
    add_host: Sequence[str] | None = None,
    host_loopback: bool | None = None,
    mtu: int | None = None,
    stop_timeout: float | str | None = None,
    restart: str | None = None,
    restart_delay: float | str | None = None,
    restart_max_delay: float | str | None = None,
    restart_intensity: int | None = None,
    restart_period: float | str | None = None,
    health_cmd: str | None = None,
    health_interval: float | str | None = None,
    health_timeout: float | str | None = None,
    health_retries: int | None = None,
    health_start_period: float | str | None = None,
    health_on_failure: HealthAction | None = None,
    volumes: Sequence[str] | None = None,
    mounts: Sequence[str] | None = None,
    tmpfs: Sequence[str] | None = None,
    read_only: bool | None = None,
    read_only_tmpfs: bool | None = None,
    labels: Mapping[str, str] | None = None,
    init: bool | None = None,
    log_opt: Sequence[str] | None = None,
    cap_add: Sequence[str] | None = None,
    cap_drop: Sequence[str] | None = None,
    privileged: bool | None = None,
    security_opt: Sequence[str] | None = None,
    ulimit: Sequence[str] | None = None,
    pids_limit: int | None = None,
    memory: int | str | None = None,
    cpus: float | None = None,
) -> AsyncIterator[Container]:
    """Start a container and yield its handle once its command is running.

    Leaving the block stops the container gracefully (unless it has ended already) and waits
    until its group is cleaned up, so nothing outlives the block. By default the container is
    removed afterwards, as with ``--rm``. The options are the CLI's, by their long names; an
    option left at ``None`` takes the CLI's default. Durations are seconds or ``"1m30s"``.

    *volumes* are ``-v`` values (``"NAME:/data"``, ``"/host:/ctr:ro"``), *mounts* ``--mount``
    values, *tmpfs* ``--tmpfs`` values (docs/volumes.md). *init* runs catatonit as PID 1
    (``--init``). *cap_add*, *cap_drop* (``["NET_RAW"]``, ``["ALL"]``), *privileged*,
    *security_opt* (``["no-new-privileges", "seccomp=unconfined"]``) and *ulimit*
    (``["nofile=1024:2048"]``) are the CLI's; *pids_limit*, *memory* (bytes or ``"512m"``)
    and *cpus* need a cgroup of the container's own (root here), else they are refused.

    *network* is a mode (``auto``, ``pasta``, ``slirp4netns``, ``none``, ``host``), a
    :class:`carrier.Network` from :func:`carrier.network` (whose root is then used), or the
    name of a named network (``carrier.NetworkName("backend")``, or ``net.name``); on a named
    network the container is found by its name, its *hostname* and each of *network_aliases*
    (``--network NAME --network-alias ALIAS``).

    *pull* is ``missing`` (pull only when the image is not stored), ``always`` or ``never``.
    *env* is a mapping or a list of ``KEY=VALUE``. *ports* maps a container port to
    ``"[HOST_IP:]HOST_PORT"`` or a host port (``{80: "127.0.0.1:0"}``; port 0 picks a free
    one, see :meth:`Container.published`), or is a list of ``-p`` values. *restart* is
    ``no``, ``always``, ``on-failure[:N]`` or ``unless-stopped``.
    The output goes to the container's log (:meth:`Container.logs`), and also where *stdio*
    says; *log_opt* are ``--log-opt`` values (``["max-size=10m", "max-file=3"]``).
    With *wait_for* the block is entered only once the condition holds (else
    :class:`ReadyTimeoutError` or :class:`ExitedBeforeReadyError`). *health* is a host-side
    health check (``carrier.http(80)``, ``carrier.tcp(80)``, or any condition), run every
    ``health_interval`` seconds like ``health_cmd``.

    **Cancellation:** cancelling the enclosing scope stops and cleans the container the same
    way before the cancellation propagates.
    """
    _process.check_sigchld()
    for option, value in (("pull", pull), ("storage_driver", storage_driver),
                          ("health_on_failure", health_on_failure)):
        if value is not None:
            check_choice(option, value)
    network_name, root = for_run(network, root)
    given: dict[str, Any] = {
        "runtime": runtime, "network": network_name, "host_loopback": host_loopback, "mtu": mtu,
        "stop_timeout": stop_timeout, "restart": restart, "restart_delay": restart_delay,
        "restart_max_delay": restart_max_delay, "restart_intensity": restart_intensity,
        "restart_period": restart_period, "health_cmd": health_cmd,
        "health_interval": health_interval, "health_timeout": health_timeout,
        "health_retries": health_retries, "health_start_period": health_start_period,
        "health_on_failure": health_on_failure, "hostname": hostname,
        "storage_driver": storage_driver, "read_only": read_only,
        "read_only_tmpfs": read_only_tmpfs, "init": check_flag("init", init),
        "privileged": check_flag("privileged", privileged), "pids_limit": pids_limit,
        "memory": memory, "cpus": cpus,
        "labels": dict(labels) if labels is not None else None,
        "entrypoint": strings("entrypoint", entrypoint) if entrypoint is not None else None,
    }
    settings = {k: v for k, v in given.items() if v is not None}
    for option, items in (("dns", dns), ("dns_search", dns_search), ("dns_option", dns_option),
                          ("add_host", add_host), ("volumes", volumes), ("mounts", mounts),
                          ("tmpfs", tmpfs), ("log_opt", log_opt), ("cap_add", cap_add),
                          ("cap_drop", cap_drop), ("security_opt", security_opt),
                          ("ulimit", ulimit), ("network_aliases", network_aliases)):
        settings[option] = strings(option, items)
    argv = strings("command", command)
    env_list = env_items(env)
    port_list = port_specs(ports)
    carrier_root = Root.open(root)
    await reconcile(carrier_root)
    await ensure_image(carrier_root, image, pull)
    record, lock = create(
        carrier_root, image, argv, name=name, env=env_list, workdir=workdir, user=user,
        remove=remove, ports=port_list, **settings,
    )
    if stdio is None:  # the output goes to the log only
        stdio = Stdio(subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL)
    with unwrapped():
        async with anyio.create_task_group() as tg:
            container: Container = await tg.start(
                partial(supervise, health_probe=health), carrier_root, record, lock, stdio
            )
            try:
                if wait_for is not None:
                    await container.wait_for(wait_for, wait_timeout)
                yield container
            finally:
                container.stop()
