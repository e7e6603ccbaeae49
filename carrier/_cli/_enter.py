"""Entering a running container: ``exec``, ``shell`` and ``terminal``, each after the network
check and repair (docs/exec.md)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

from cyclopts import Parameter

from .._util._errors import CarrierError
from ._common import open_root
from ._options import EnvOption, UserOption, WorkdirOption

if TYPE_CHECKING:
    from .._state._records import Record
    from .._util._root import Root


def exec_(
    container: str,
    *command: str,
    interactive: Annotated[bool, Parameter(name=["-i", "--interactive"])] = False,
    tty: Annotated[bool, Parameter(name=["-t", "--tty"])] = False,
    detach: Annotated[bool, Parameter(name=["-d", "--detach"])] = False,
    env: EnvOption = None,
    workdir: WorkdirOption = None,
    user: UserOption = None,
) -> int:
    """Run a command in a running container.

    Parameters
    ----------
    container: str
        Container name, id or id prefix.
    command: str
        The command and its arguments.
    interactive: bool
        Pass standard input to the command.
    tty: bool
        Give the command a pseudo-terminal.
    detach: bool
        Start the command and return at once; it runs on inside, its output discarded.
    """
    if not command:
        raise CarrierError("exec needs a command: carrier exec CONTAINER COMMAND...")
    if detach and (interactive or tty):
        raise CarrierError("exec -d attaches nothing: -i and -t cannot go with it")
    return _enter(container, list(command), interactive=interactive, terminal=tty,
                  env=env or [], workdir=workdir, user=user, detach=detach)


def shell(
    container: str,
    *command: str,
    env: EnvOption = None,
    workdir: WorkdirOption = None,
    user: UserOption = None,
) -> int:
    """Work interactively in a running container (default: /bin/sh).

    A pseudo-terminal is used when standard input is a terminal.
    """
    return _enter(container, list(command) or ["/bin/sh"], interactive=True,
                  terminal=sys.stdin.isatty(), env=env or [], workdir=workdir, user=user,
                  session=True)


def terminal(
    container: str,
    *command: str,
    env: EnvOption = None,
    workdir: WorkdirOption = None,
    user: UserOption = None,
) -> int:
    """Open a real terminal in a running container (default: /bin/sh).

    Always a pseudo-terminal: raw mode locally, window size followed, Ctrl-C/D/Z passed in.
    """
    return _enter(container, list(command) or ["/bin/sh"], interactive=True, terminal=True,
                  env=env or [], workdir=workdir, user=user, session=True)


def _enter(ref: str, argv: list[str], *, interactive: bool, terminal: bool, env: list[str],
           workdir: str | None, user: str | None, session: bool = False,
           detach: bool = False) -> int:
    """Check the network, then run *argv* inside."""
    from functools import partial

    import anyio

    from .._network._check import check_and_repair
    from .._runtime._exec import exec_in
    from .._state._records import Containers

    root = open_root()
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
    if detach:  # through the supervisor, which adopts and reaps the command
        from .._supervision._control import exec_detached

        code = exec_detached(cdir, argv, env, workdir, user)
        if code is not None:
            return code
    return int(anyio.run(partial(exec_in, root, record, argv, env=env, workdir=workdir, user=user,
                                 interactive=interactive, terminal=terminal, session=session,
                                 detach=detach)))


def _wait_started(root: Root, ref: str, bound: float = 30) -> Record:
    """The running container *ref*; one still starting is waited for, up to *bound* seconds."""
    from .._runtime._exec import running_record
    from .._state._records import Containers, Status

    containers = Containers(root)
    deadline = time.monotonic() + bound
    record = containers.find(ref)
    while record.status is Status.CREATED and containers.supervisor_alive(record.id):
        if time.monotonic() > deadline:
            raise CarrierError(f"container {record.name} did not finish starting in {bound:g} s")
        time.sleep(0.02)  # bounded poll: the start is another process's, with no event to share
        record = containers.load(record.id)
    return running_record(root, record.id)
