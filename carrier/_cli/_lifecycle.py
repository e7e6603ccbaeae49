"""``create``, ``start``, ``restart`` and ``rename``: a container's life after ``run``, as Podman
spells it. Starting goes through the same supervisor as ``run`` (:mod:`._run`)."""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Annotated, Any

from cyclopts import Parameter

from .._runtime._terminal import DEFAULT_DETACH_KEYS, parse_detach_keys
from .._util._errors import CarrierError, ConflictError
from .._util._signals import held
from . import _run
from ._common import each, open_root

if TYPE_CHECKING:
    from .._util._root import Root


def _create(*args: Any, **kwargs: Any) -> int:
    bound = inspect.signature(_run.run).bind(*args, **kwargs)
    bound.apply_defaults()
    return _run.launch(dict(bound.arguments), create_only=True)


# ``create`` takes every option of ``run``, declared once (there, with their help lines),
# but -d/--detach: it never starts anything.
create = functools.update_wrapper(_create, _run.run)
create.__name__ = create.__qualname__ = "create"
_RUN_SIGNATURE = inspect.signature(_run.run)
create.__signature__ = _RUN_SIGNATURE.replace(  # type: ignore[attr-defined]
    parameters=[p for p in _RUN_SIGNATURE.parameters.values() if p.name != "detach"])
create.__doc__ = "Create a container (run's options) without starting it; print its id.\n" + (
    (_run.run.__doc__ or "").partition("\n")[2])


def start(
    *containers: str,
    attach: Annotated[bool, Parameter(name=["-a", "--attach"])] = False,
    interactive: Annotated[bool, Parameter(name=["-i", "--interactive"])] = False,
    detach_keys: str = DEFAULT_DETACH_KEYS,
) -> int:
    """Start created or exited containers, detached (-a: attach to its output and exit with
    its exit code). A container that runs already is left as it is (-a attaches to it).

    Each container is started on its own: one that fails is reported in one line, the others
    are still started, and the exit code is 125 if any failed.

    Parameters
    ----------
    containers: str
        Container names, ids or id prefixes.
    attach: bool
        Attach to the container's output (and terminal) and exit with its exit code.
    interactive: bool
        With -a: pass standard input to the container.
    detach_keys: str
        With -a on a running container: the keys that detach (ctrl-<x> and single
        characters, comma-separated; "" disables).
    """
    keys = parse_detach_keys(detach_keys)
    if not containers:
        raise CarrierError("start needs at least one container: carrier start [-a] NAME...")
    if attach and len(containers) > 1:
        raise CarrierError("you cannot start and attach multiple containers at once")
    root = open_root()
    if attach:
        return _start_one(root, containers[0], attach=True, interactive=interactive, keys=keys)
    return each(containers, lambda ref: _start_one(root, ref, attach=False))


def _start_one(root: Root, ref: str, *, attach: bool, interactive: bool = False,
               keys: bytes = b"") -> int:
    """Start container *ref* in a detached supervisor (printing *ref*), or supervise it here
    with *attach*; its exit code then. With *attach*, a running one is attached to."""
    import anyio

    from .._state._records import Containers
    from .._supervision._control import claim
    from ._attach import DETACHED, attach_to

    found = Containers(root)
    cid = found.resolve(ref)
    # As in run: signals wait until a receiver listens, so none cuts the start in two.
    with held():
        claimed = anyio.run(claim, root, cid)
        if claimed is not None:
            record, lock = claimed
            if attach:
                return _run.supervise_here(root, record, lock, interactive=interactive)
            return _run.run_detached(root, record, lock, shown=ref)
    if attach:  # it runs already: attached to, with every signal as it was (SIGWINCH)
        code = attach_to(root, found.load(cid), keys, stdin=interactive)
        return 0 if code == DETACHED else code
    print(ref)
    return 0


def restart(
    *containers: str,
    time: Annotated[str | None, Parameter(name=["-t", "--time"])] = None,
) -> int:
    """Restart containers: stop each (SIGTERM, then SIGKILL after -t: 10s, 500ms, or seconds)
    if it runs, then start it detached.

    Each container is handled on its own: one that fails is reported in one line, the others
    are still restarted, and the exit code is 125 if any failed.

    Parameters
    ----------
    time: str | None
        Seconds between SIGTERM and SIGKILL for the stop.
    """
    from .._state._records import Containers
    from .._supervision._control import request_stop
    from .._util._durations import parse_duration
    from ._containers import _stop_timeout

    if not containers:
        raise CarrierError("restart needs at least one container: carrier restart [-t T] NAME...")
    timeout = parse_duration(time, "-t/--time") if time is not None else None
    root = open_root()
    found = Containers(root)

    def one(ref: str) -> None:
        cid = found.resolve(ref)
        if found.supervisor_alive(cid):
            request_stop(root, cid, ref, timeout, _stop_timeout(found, cid))
        _start_one(root, ref, attach=False)

    return each(containers, one)


def rename(container: str, new_name: str, /) -> int:
    """Rename a container that is not running (its hostname stays as it was)."""
    import os

    from .._state._records import Containers
    from .._util._atomic import try_lock

    root = open_root()
    found = Containers(root)
    cid = found.resolve(container)
    lock = try_lock(found.supervisor_lock(cid), create=False)
    if lock is None:
        raise ConflictError(f"cannot rename container {container}: it is running (stop it first)")
    try:
        found.rename(found.load(cid), new_name)
    finally:
        os.close(lock)
    return 0
