"""What each ``carrier`` command does, separate from how its arguments are parsed."""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from . import _events
from ._atomic import read_json
from ._control import pidfd_of, reconcile, request_stop
from ._create import create
from ._ensure import ensure_image_sync
from ._errors import CarrierError, ConflictError, only_leaf, unwrapped
from ._format import ago as _ago
from ._format import table as _table
from ._root import Root
from ._state import Containers, Record, Status
from ._supervisor import Container, Outcome, Reason, Stdio, supervise

if TYPE_CHECKING:
    from ._treespec import Tree


def _open_root() -> Root:
    root = Root.open()
    anyio.run(reconcile, root)
    return root


# -- run ----------------------------------------------------------------------------------


def run(image: str, command: list[str], *, detach: bool, interactive: bool,
        name: str | None, env: list[str], workdir: str | None, user: str | None,
        hostname: str | None, entrypoint: list[str] | None, pull: str = "missing",
        platform: str | None = None, **settings: Any) -> int:
    """``carrier run``: foreground (exit with the container's status) or detached."""
    root = _open_root()
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
    # The runtime already printed its own failure on the container's stderr.
    if outcome.exit_code == 125 and outcome.reason is not Reason.RUNTIME_FAILED:
        print(f"carrier: {outcome.message or outcome.reason}", file=sys.stderr)
    return outcome.exit_code


async def _foreground(root: Root, record: Record, lock: int, stdio: Stdio) -> Outcome:
    """Supervise in this process; Ctrl-C is forwarded, a second one kills, SIGTERM stops."""
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


def _in_background(log: Path, work: Callable[[int], object]) -> str:
    """Fork a supervisor into its own session to run *work(status_fd)*; return the status it
    wrote ("started", or why it could not start) once it has closed that fd."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the detached supervisor
        os.close(read_end)
        code = 0
        try:
            os.setsid()
            _redirect_std(log)
            work(write_end)
        except BaseException:
            traceback.print_exc()  # into the supervisor's log: its only trace
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as status:
        return status.read().decode(errors="replace").strip()


def _detach(root: Root, record: Record, lock: int) -> int:
    """Fork a supervisor into its own session; print the id once the command runs."""
    cdir = Containers(root).dir(record.id)

    def work(status_fd: int) -> None:
        with open(cdir / "container.log", "ab") as log:
            anyio.run(_detached, root, record, lock, log, status_fd)

    message = _in_background(cdir / "supervisor.log", work)
    os.close(lock)
    if message != "started":
        raise CarrierError(message or "the detached supervisor failed to start the container")
    print(record.id)
    return 0


def _redirect_std(log: Path) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - replaces the process's stdout
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - likewise stderr


async def _detached(root: Root, record: Record, lock: int, log: IO[bytes], status_fd: int) -> None:
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
                status.write(_one_line(e).encode())
            raise


async def _stop_on_sigterm(signals: Any, container: Container) -> None:
    async for sig in signals:
        if sig == signal.SIGTERM:  # SIGINT and SIGHUP mean nothing to a detached supervisor
            container.stop()


def _one_line(exc: BaseException) -> str:
    exc = only_leaf(exc) or exc
    return str(exc) if isinstance(exc, CarrierError) else f"{type(exc).__name__}: {exc}"


# -- entering containers ------------------------------------------------------------------


def enter(ref: str, argv: list[str], *, interactive: bool, terminal: bool, env: list[str],
          workdir: str | None, user: str | None, session: bool = False) -> int:
    """``carrier exec``, ``shell`` and ``terminal``: check the network, then run *argv*."""
    from ._exec import exec_in
    from ._netcheck import check_and_repair

    root = _open_root()
    record = _wait_started(root, ref)
    cdir = Containers(root).dir(record.id)
    try:
        repaired = anyio.run(partial(anyio.to_thread.run_sync, check_and_repair, record, cdir))
    except (OSError, ValueError) as e:  # the check is a courtesy: never a reason not to enter
        print(f"carrier: could not check the network of {record.name}: {e}", file=sys.stderr)
        repaired = []
    if repaired:
        print(f"carrier: repaired the network of {record.name}: {', '.join(repaired)}",
              file=sys.stderr)
    return int(anyio.run(partial(exec_in, root, record, argv, env=env, workdir=workdir, user=user,
                                 interactive=interactive, terminal=terminal, session=session)))


def _wait_started(root: Root, ref: str, bound: float = 30) -> Record:
    """The running container *ref*; one still starting is waited for, up to *bound* seconds."""
    from ._exec import running_record

    containers = Containers(root)
    deadline = time.monotonic() + bound
    record = containers.find(ref)
    while record.status is Status.CREATED and containers.supervisor_alive(record.id):
        if time.monotonic() > deadline:
            raise CarrierError(f"container {record.name} did not finish starting in {bound:g} s")
        time.sleep(0.02)  # bounded poll: the start is another process's, with no event to share
        record = containers.load(record.id)
    return running_record(root, record.id)


# -- trees ----------------------------------------------------------------------------------


def up(path: Path, detach: bool) -> int:
    """``carrier up``: run a declared tree in the foreground, or detached with ``-d``."""
    from ._treespec import load

    root = _open_root()
    tree = load(path)
    if detach:
        log = root.path / "trees" / f"{tree.name}.log"
        log.parent.mkdir(mode=0o700, exist_ok=True)
        message = _in_background(log, lambda fd: anyio.run(_tree_main, root, tree, fd))
        if message != "started":
            raise CarrierError(message or f"tree {tree.name} failed to start")
        print(tree.name)
        return 0
    gave_up = anyio.run(_tree_main, root, tree, None)
    if gave_up:
        print(f"carrier: {gave_up}", file=sys.stderr)
        return 125
    return 0


async def _tree_main(root: Root, tree: Tree, status_fd: int | None) -> str | None:
    """Run the tree until SIGINT/SIGTERM (or every container ended); report start on the fd."""
    from ._tree import up as run_tree

    stop = anyio.Event()
    result: list[str | None] = []
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        with anyio.open_signal_receiver(*signals) as received, unwrapped():
            async with anyio.create_task_group() as tg:

                async def on_signal() -> None:
                    async for _ in received:
                        stop.set()

                async def main(*, task_status: TaskStatus[dict[str, Container]]) -> None:
                    result.append(await run_tree(root, tree, stop, task_status=task_status))
                    tg.cancel_scope.cancel()

                tg.start_soon(on_signal)
                handles = await tg.start(main)
                names = ", ".join(h.name for h in handles.values())
                if status_fd is None:
                    print(f"carrier: {tree.name} is up: {names}", file=sys.stderr, flush=True)
                else:
                    os.write(status_fd, b"started")
                    os.close(status_fd)
                    status_fd = None
    except BaseException as e:
        if status_fd is not None:
            os.write(status_fd, _one_line(e).encode())
        raise
    return result[0] if result else None


def down(path: Path) -> int:
    """``carrier down``: stop a tree that ``carrier up`` runs, and wait until it is down."""
    from ._tree import state_file
    from ._treespec import load

    root = _open_root()
    tree = load(path)
    state = state_file(root, tree.name)
    try:
        data = read_json(state)
    except FileNotFoundError:
        raise CarrierError(f"tree {tree.name} is not up") from None
    fd = pidfd_of(int(data["pid"]), data.get("start"))
    if fd is None:
        state.unlink(missing_ok=True)
        raise CarrierError(f"tree {tree.name} is not up (its supervisor is gone)")
    try:
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        if not select.select([fd], [], [], 600)[0]:
            raise CarrierError(f"tree {tree.name}: its supervisor did not stop in time")
    finally:
        os.close(fd)
    print(tree.name)
    return 0


# -- containers ---------------------------------------------------------------------------


def _status_text(r: Record) -> str:
    if r.status is Status.RUNNING:
        return f"Up {_ago(r.started)}"
    if r.status is Status.EXITED:
        return f"Exited ({r.exit_code}) {_ago(r.finished)} ago"
    return "Created"


def ps(*, all_: bool, fmt: str) -> int:
    """``carrier ps``."""
    records = [r for r in Containers(_open_root()).all() if all_ or r.status is Status.RUNNING]
    if fmt == "json":
        print(json.dumps([_summary(r) for r in records], indent=2))
        return 0
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for r in records:
        cmd = " ".join(r.spec.args)
        cmd = cmd if len(cmd) <= 20 else cmd[:17] + "..."
        rows.append((r.id[:12], r.spec.image, f'"{cmd}"', f"{_ago(r.created)} ago",
                     _status_text(r), r.name))
    _table(rows)
    return 0


def _summary(r: Record) -> dict[str, Any]:
    return {
        "Id": r.id, "Names": [r.name], "Image": r.spec.image, "ImageID": r.spec.image_id,
        "Command": r.spec.args, "Created": r.created, "State": str(r.status),
        "Status": _status_text(r), "ExitCode": r.exit_code, "Reason": r.reason,
        "StartedAt": r.started, "FinishedAt": r.finished,
    }


def stop(refs: list[str], timeout: float | None) -> int:
    """``carrier stop``: each container is looked up before any is stopped."""
    root = _open_root()
    containers = Containers(root)
    records = [containers.find(ref) for ref in refs]
    for ref, record in zip(refs, records, strict=True):
        if containers.supervisor_alive(record.id):  # running, starting or between restarts
            request_stop(root, record, timeout)
        print(ref)
    return 0


def rm(refs: list[str], force: bool) -> int:
    """``carrier rm``: a running container is refused unless ``-f``."""
    root = _open_root()
    containers = Containers(root)
    records = [containers.find(ref) for ref in refs]
    for record in records:
        if containers.supervisor_alive(record.id) and not force:
            raise ConflictError(
                f"cannot remove container {record.name}: it is running (stop it first or use -f)"
            )
    for ref, record in zip(refs, records, strict=True):
        if containers.supervisor_alive(record.id):
            request_stop(root, record, 0)
        if containers.dir(record.id).exists():
            containers.remove(containers.load(record.id))
        print(ref)
    return 0


def logs(ref: str) -> int:
    """``carrier logs``: the output a detached container wrote."""
    root = _open_root()
    record = Containers(root).find(ref)
    path = Containers(root).dir(record.id) / "container.log"
    if not path.exists():
        raise CarrierError(f"container {record.name} has no logs: it ran in the foreground")
    with path.open("rb") as f:
        while chunk := f.read(1 << 16):
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    return 0


def info(ref: str) -> int:
    """``carrier info``: the record, as JSON."""
    root = _open_root()
    record = Containers(root).find(ref)
    data = record.to_json()
    data["Dir"] = str(Containers(root).dir(record.id))
    print(json.dumps(data, indent=2, sort_keys=True))
    return 0


def events(fmt: str, follow: bool) -> int:
    """``carrier events``: what happened so far; with ``follow``, what happens next too."""
    root = Root.open()
    for event in _events.stream(root.path, follow=follow):
        if fmt == "json":
            print(json.dumps(event, sort_keys=True), flush=True)
        else:
            stamp = dt.datetime.fromtimestamp(event["time"], dt.UTC).isoformat(timespec="milliseconds")
            attrs = " ".join(f"{k}={v}" for k, v in sorted(event.items())
                             if k not in ("time", "id", "name", "type"))
            print(f"{stamp} {event['type']:<13} {event['name']} ({event['id'][:12]}) {attrs}",
                  flush=True)
    return 0
