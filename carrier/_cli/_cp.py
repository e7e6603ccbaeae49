"""``carrier cp SRC DEST``: files into or out of a container, as ``docker cp`` copies them.

Exactly one side is ``NAME:PATH``. The container's side is a worker chrooted into the
container's root as root of its user namespace (``carrier._storage._transfer``); the two sides
talk tar through a pipe. A path with a colon on the host is written ``./a:b`` or ``/x/a:b``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .._util._errors import CarrierError
from ._common import open_root

if TYPE_CHECKING:
    from .._state._records import Record
    from .._util._root import Root


def cp(src: str, dest: str, /) -> int:
    """Copy files between a container and the host (``NAME:PATH`` on one side).

    Parameters
    ----------
    src: str
        The source: a host path, or NAME:PATH in a container; DIR/. copies a directory's
        contents.
    dest: str
        The destination: a host path (``-`` writes a tar stream to stdout), or NAME:PATH.
    """
    from .._state._records import Containers, Status
    from .._util._atomic import try_lock

    src_ref, src_path = _split(src)
    dest_ref, dest_path = _split(dest)
    if src_ref is not None and dest_ref is not None:
        raise CarrierError("copying between containers is not supported: copy through the host")
    if src_ref is None and dest_ref is None:
        raise CarrierError("one of SRC and DEST must be a container path: NAME:PATH")
    if not (src_path and dest_path):
        raise CarrierError("a path is empty: give NAME:PATH and a host path")
    if src_path == "-":
        raise CarrierError("copying a tar stream from stdin is not supported: give a host path")
    if src_ref is None and not os.path.lexists(src_path):
        raise CarrierError(f"no such file or directory: {src_path}")
    root = open_root()
    found = Containers(root)
    ref = src_ref if src_ref is not None else dest_ref
    assert ref is not None
    record = found.find(ref)
    running = record.status is Status.RUNNING and found.supervisor_alive(record.id)
    pid = record.container_pid if running else None
    driver = record.spec.storage_driver
    lock = None
    if pid is None and driver == "overlay":  # no start while its overlay is mounted here
        lock = try_lock(found.supervisor_lock(record.id))
        if lock is None:
            raise CarrierError(f"container {record.name} is starting: copy once it runs")
    try:
        if pid is None:  # a stopped container: its files are reached with its own id maps
            return _in_holder(lambda enter: _copy(root, record, None, src_path, dest_path,
                                                  into=dest_ref is not None, enter=enter))
        return _copy(root, record, pid, src_path, dest_path, into=dest_ref is not None)
    finally:
        if lock is not None:
            os.close(lock)


def _in_holder(work: Callable[[list[str]], int]) -> int:
    """Run *work* with the ``nsenter`` prefix of a holder made for it: a user namespace with
    the id maps a run has (the user's subordinate ids, so files a non-root user of the
    container owns are theirs, not the overflow id) and a private mount namespace; the holder
    ends afterwards, and with it anything mounted there."""
    import anyio

    from .._sandbox._holder import start_holder

    async def main() -> int:
        holder = await start_holder(userns=os.geteuid() != 0, netns=False, mountns=True)
        try:
            return work(holder.enter_argv(mount=True))
        finally:
            await holder.stop()

    return anyio.run(main)


def _copy(root: Root, record: Record, pid: int | None, src_path: str, dest_path: str, *,
          into: bool, enter: list[str] | None = None) -> int:
    """Pack on one side, unpack on the other, through the container's worker."""
    from .._state._records import Containers
    from .._storage._transfer import pack, unpack

    cdir = Containers(root).dir(record.id)

    def worker_argv(action: str, path: str) -> list[str]:
        return _worker_argv(root, record, cdir, pid, action, path, enter)

    if into:  # into the container
        argv = worker_argv("unpack", dest_path)
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as worker:
            assert worker.stdin is not None
            try:
                pack(src_path, worker.stdin)
                worker.stdin.close()
            except BrokenPipeError:  # the worker refused: its message says why
                pass
            return _finish(worker)
    argv = worker_argv("pack", src_path)
    if dest_path == "-":
        sys.stdout.flush()
        with subprocess.Popen(argv, stdout=sys.stdout.fileno(), stderr=subprocess.PIPE) as worker:
            return _finish(worker)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as worker:
        assert worker.stdout is not None
        try:
            unpack(worker.stdout, dest_path, untrusted=True)
        except Exception:
            worker.stdout.close()  # a worker still writing gets EPIPE and ends (code 141)
            if worker.wait() not in (0, _EPIPE):
                _finish(worker)  # its own failure (no such file inside) is the one to report
            raise
        return _finish(worker)


def _worker_argv(root: Root, record: Record, cdir: Path, pid: int | None, action: str,
                 path: str, enter: list[str] | None) -> list[str]:
    """The worker's command line: a stopped ``overlay`` container's root is mounted as its
    runs mount it (the image's layers under its upper directory), in the user and mount
    namespace of the holder *enter* leads into (which ends after the copy), as Podman mounts
    a stopped container's; every other case is ``_transfer``'s."""
    from .._images._store import Store
    from .._storage._transfer import worker_argv
    from .._util._process import python_module

    driver = record.spec.storage_driver
    if pid is None and driver not in ("overlay", "copy"):
        raise CarrierError(f"the root filesystem of a stopped container is reachable only with "
                           f"the overlay or copy storage driver (this one uses {driver}): start "
                           "it first")
    if pid is not None or driver != "overlay":
        return worker_argv(cdir, driver, pid, action, path, enter=enter)
    layers = Store(root).get(record.spec.image_id).layers
    for d in ("upper", "work", "rootfs"):  # a container never started has none yet
        (cdir / d).mkdir(mode=0o755 if d == "upper" else 0o700, exist_ok=True)
    lower = ":".join(str(p) for p in reversed(layers))  # the top layer first, as _rootfs
    opts = f"userxattr,lowerdir={lower},upperdir={cdir / 'upper'},workdir={cdir / 'work'}"
    mountpoint = str(cdir / "rootfs")
    assert enter is not None
    return [*enter, "sh", "-c",
            'mount -t overlay overlay -o "$1" "$2" || exit 125; shift 2; exec "$@"', "sh",
            opts, mountpoint,
            *python_module("carrier._storage._transfer_worker", mountpoint, action, path, "")]


_EPIPE = 141
"""The worker's exit code when our side stopped reading (our own failure is reported)."""


def _split(arg: str) -> tuple[str | None, str]:
    """``NAME:PATH`` as (NAME, PATH); a host path (absolute, or starting with ``.``, or
    without a colon) as (None, PATH)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path


def _finish(worker: subprocess.Popen[bytes]) -> int:
    """Wait for the worker; its one-line failure becomes ours."""
    err: IO[bytes] | None = worker.stderr
    text = err.read().decode(errors="replace") if err is not None else ""
    code = worker.wait()
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines[:-1] if code else lines:  # warnings (skipped devices) pass through
        print(line, file=sys.stderr)
    if code:
        last = lines[-1] if lines else f"the copy failed (code {code})"
        raise CarrierError(last.removeprefix("carrier: "))
    return 0
