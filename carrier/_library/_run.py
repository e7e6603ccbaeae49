"""The library entry point: run a supervised container from any anyio program."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from .._images._ensure import ensure_image
from .._state._records import Containers
from .._supervision._control import reconcile
from .._supervision._create import create
from .._supervision._group import Container, Stdio, supervise
from .._supervision._ready import Condition
from .._util._errors import unwrapped
from .._util._root import Root


@asynccontextmanager
async def run(
    image: str,
    command: Sequence[str] = (),
    *,
    name: str | None = None,
    env: Iterable[str] = (),
    workdir: str | None = None,
    user: str | None = None,
    remove: bool = True,
    root: Path | str | None = None,
    stdio: Stdio | None = None,
    ports: Mapping[str, int | str] | Iterable[str] = (),
    wait_for: Condition | None = None,
    wait_timeout: float = 60.0,
    health: Condition | None = None,
    pull: str = "missing",
    **settings: Any,
) -> AsyncIterator[Container]:
    """Start a container and yield its handle once its command is running.

    Leaving the block stops the container gracefully (unless it has ended already) and waits
    until its group is cleaned up, so nothing outlives the block. By default the container is
    removed afterwards, as with ``--rm``. Further *settings* are the CLI's options by their
    long names: ``runtime``, ``network`` (auto, pasta, slirp4netns, none, host), ``ports``
    (``["127.0.0.1:8080:80"]``), ``dns``, ``dns_search``, ``dns_option``, ``add_host``,
    ``host_loopback``, ``stop_timeout``, ``hostname``, ``entrypoint``, ``restart``,
    ``health_cmd`` and the other ``health_*`` and ``restart_*`` options.

    *pull* is ``missing`` (pull only when the image is not stored), ``always`` or ``never``.
    *ports* maps ``"[HOST_IP:]HOST_PORT"`` to the container's port (``{"127.0.0.1:0": 80}``;
    port 0 picks a free one, see :meth:`Container.published`), or is a list of ``-p`` values.
    The output goes to the container's log (:meth:`Container.logs`) unless *stdio* says
    otherwise. With *wait_for* the block is entered only once the condition holds. *health* is
    a host-side health check (``carrier.http(80)``, ``carrier.tcp(80)``, or any condition),
    run every ``health_interval`` seconds like ``health_cmd``.

    **Cancellation:** cancelling the enclosing scope stops and cleans the container the same
    way before the cancellation propagates.
    """
    carrier_root = Root.open(root)
    await reconcile(carrier_root)
    await ensure_image(carrier_root, image, pull)
    if isinstance(ports, Mapping):
        ports = [f"{host}:{ctr}" for host, ctr in ports.items()]
    record, lock = create(
        carrier_root, image, command, name=name, env=env, workdir=workdir, user=user,
        remove=remove, ports=list(ports), **settings,
    )
    with contextlib.ExitStack() as files:
        if stdio is None:
            log = files.enter_context(
                open(Containers(carrier_root).dir(record.id) / "container.log", "ab")  # noqa: ASYNC230
            )
            stdio = Stdio(subprocess.DEVNULL, log, log)
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
