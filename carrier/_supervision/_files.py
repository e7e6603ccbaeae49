"""Files into and out of a running container from the library (``Container.copy_to`` and
``copy_from``), on the very code ``carrier cp`` uses: tar streams packed and unpacked by
``carrier._storage._transfer``, the container's side in the worker chrooted into its root as
root of its user namespace, the host's side unpacking the container's archive as untrusted.

The host's side goes through a temporary file rather than a pipe, so the async caller never
blocks on a pipe and cancellation just kills the worker (anyio's process) and drops the file.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import IO

import anyio

from .._state._records import Containers, Record, Status
from .._storage._transfer import pack, unpack, worker_argv
from .._util._errors import CarrierError, NotFoundError
from .._util._logging import log
from .._util._root import Root

Source = Path | str | bytes | IO[bytes]
"""What :func:`copy_to` takes: a host path, a file's contents, or a tar stream."""

async def copy_to(root: Root, record: Record, source: Source, dest: str, *,
                  mode: int = 0o644) -> None:
    """Copy *source* into the container at *dest*: a host path (``str`` or ``Path``: a file or
    directory, placed as ``carrier cp SRC NAME:DEST`` places it), ``bytes`` (the contents of
    the file *dest*, with *mode*), or a binary file object holding a tar stream (unpacked into
    the directory *dest*, as docker-py's ``put_archive``)."""
    _check_dest(dest)
    with tempfile.TemporaryFile() as archive:
        if isinstance(source, bytes):
            await anyio.to_thread.run_sync(_pack_bytes, source, dest, mode, archive)
            target = os.path.dirname(dest.rstrip("/")) or "/"
        elif isinstance(source, Path | str):
            await anyio.to_thread.run_sync(pack, str(source), archive)
            target = dest
        else:
            await anyio.to_thread.run_sync(_spool, source, archive)
            target = dest
        archive.seek(0)
        await _worker(root, record, "unpack", target, stdin=archive)


async def copy_from(root: Root, record: Record, source: str, dest: Path | str) -> None:
    """Copy *source* (a path in the container; ``DIR/.`` for a directory's contents) to the
    host path *dest*, placed as ``carrier cp NAME:SRC DEST`` places it: into *dest* when it
    is a directory, else as *dest* (whose parent must exist)."""
    if not source:
        raise CarrierError("the path in the container is empty")
    with tempfile.TemporaryFile() as archive:
        await _worker(root, record, "pack", source, stdout=archive)
        archive.seek(0)
        await anyio.to_thread.run_sync(lambda: unpack(archive, str(dest), untrusted=True))


def _check_dest(dest: str) -> None:
    if not isinstance(dest, str) or not dest:
        raise CarrierError(f"invalid destination {dest!r}: expected a path in the container")


def _pack_bytes(data: bytes, dest: str, mode: int, out: IO[bytes]) -> None:
    """A tar stream of one regular file, named as *dest*'s last part, holding *data*."""
    name = os.path.basename(dest.rstrip("/"))
    if not name or dest.endswith("/"):
        raise CarrierError(f"invalid destination {dest!r}: bytes become a file: name it")
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode & 0o7777, int(time.time())
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))


def _spool(source: IO[bytes], out: IO[bytes]) -> None:
    """Copy the caller's tar stream to our file (read in chunks; nothing is parsed here: the
    worker unpacks it inside the container's root with the safety rules)."""
    for _ in range(1 << 40):  # bounded by the stream's end
        chunk = source.read(1 << 20)
        if not chunk:
            return
        out.write(chunk)


async def _worker(root: Root, record: Record, action: str, path: str, *,
                  stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """Run the transfer worker in the container's root; its one-line failure becomes ours."""
    containers = Containers(root)
    try:
        current: Record | None = containers.load(record.id)
    except NotFoundError:  # removed with its block (``remove=True``)
        current = None
    if current is None or current.status is not Status.RUNNING or current.container_pid is None:
        raise CarrierError(f"container {record.name} is not running: files are copied into "
                           "and out of a running container")
    argv = worker_argv(containers.dir(record.id), current.spec.storage_driver,
                       current.container_pid, action, path)
    result = await anyio.run_process(argv, stdin=stdin, stdout=stdout, check=False)
    lines = [line for line in result.stderr.decode(errors="replace").splitlines() if line.strip()]
    failed = result.returncode != 0
    for line in lines[:-1] if failed else lines:  # warnings (a device skipped)
        log.warning("container.copy", container=record.name, message=line.removeprefix("carrier: "))
    if failed:
        raise CarrierError(lines[-1].removeprefix("carrier: ") if lines
                           else f"the copy failed (code {result.returncode})")
