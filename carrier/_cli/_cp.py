"""``carrier cp SRC DEST``: files into or out of a container, as ``docker cp`` copies them.

Exactly one side is ``NAME:PATH``. The container's side is a worker chrooted into the
container's root as root of its user namespace (``carrier._storage._transfer``); the two sides
talk tar through a pipe. A path with a colon on the host is written ``./a:b`` or ``/x/a:b``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import IO

from .._util._errors import CarrierError
from ._common import open_root


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
    from .._storage._transfer import pack, unpack, worker_argv

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
    cdir = found.dir(record.id)
    driver = record.spec.storage_driver
    if dest_ref is not None:  # into the container
        argv = worker_argv(cdir, driver, pid, "unpack", dest_path)
        with subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE) as worker:
            assert worker.stdin is not None
            try:
                pack(src_path, worker.stdin)
                worker.stdin.close()
            except BrokenPipeError:  # the worker refused: its message says why
                pass
            return _finish(worker)
    argv = worker_argv(cdir, driver, pid, "pack", src_path)
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
