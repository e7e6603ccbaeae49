"""The library entry point: run a supervised container from any anyio program."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from ._control import reconcile
from ._create import create
from ._errors import unwrapped
from ._root import Root
from ._supervisor import Container, Stdio, supervise


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
    **settings: Any,
) -> AsyncIterator[Container]:
    """Start a container and yield its handle once its command is running.

    Leaving the block stops the container gracefully (unless it has ended already) and waits
    until its group is cleaned up, so nothing outlives the block. By default the container is
    removed afterwards, as with ``--rm``. Further *settings* are the CLI's options by their
    long names: ``runtime``, ``network`` (auto, pasta, slirp4netns, none, host), ``ports``
    (``["127.0.0.1:8080:80"]``), ``dns``, ``dns_search``, ``dns_option``, ``add_host``,
    ``host_loopback``, ``stop_timeout``, ``hostname``, ``entrypoint``.

    **Cancellation:** cancelling the enclosing scope stops and cleans the container the same
    way before the cancellation propagates.
    """
    carrier_root = Root.open(root)
    await reconcile(carrier_root)
    record, lock = create(
        carrier_root, image, command, name=name, env=env, workdir=workdir, user=user,
        remove=remove, **settings,
    )
    with unwrapped():
        async with anyio.create_task_group() as tg:
            container: Container = await tg.start(
                supervise, carrier_root, record, lock, stdio or Stdio()
            )
            try:
                yield container
            finally:
                container.stop()
