"""``carrier kill``: send a signal to running containers, as ``podman kill`` does."""

from __future__ import annotations

import signal
from typing import Annotated

from cyclopts import Parameter

from .._util._errors import CarrierError, ConflictError
from ._common import each, open_root


def parse_signal(text: str) -> int:
    """A signal given as Podman takes it: ``KILL``, ``SIGKILL``, ``kill``, ``9``, ``RTMIN+3``."""
    spelled = text.strip().upper()
    valid = {int(s) for s in signal.valid_signals()}
    if spelled.isdigit():
        number = int(spelled)
    else:
        base, plus, offset = spelled.removeprefix("SIG").partition("+")
        if base == "RTMIN" and (not plus or offset.isdigit()):
            number = signal.SIGRTMIN + int(offset or 0)
        elif not plus and f"SIG{base}" in signal.Signals.__members__:
            number = int(signal.Signals[f"SIG{base}"])
        else:
            number = 0
    if number not in valid:
        raise CarrierError(f"invalid signal: {text}")
    return number


def kill(
    *containers: str,
    signal_: Annotated[str, Parameter(name=["-s", "--signal"])] = "KILL",
) -> int:
    """Send a signal (-s: name or number; SIGKILL by default) to running containers.

    Each container is signalled on its own, as Podman does: one that is missing or not running
    is reported in one line and the others are still signalled; the exit code is 125 if any
    could not be.

    Parameters
    ----------
    signal_: str
        The signal, by name (KILL, SIGTERM) or number.
    """
    import anyio

    from .._runtime._oci import Runtime, resolve
    from .._state._records import Containers, Status

    if not containers:
        raise CarrierError("kill needs at least one container: carrier kill [-s SIGNAL] NAME...")
    number = parse_signal(signal_)
    root = open_root()
    found = Containers(root)

    def one(ref: str) -> None:
        record = found.find(ref)
        if record.status is not Status.RUNNING or not found.supervisor_alive(record.id):
            raise ConflictError(f"can only kill running containers: {ref} is {record.status}")
        runtime = Runtime(resolve(record.spec.runtime), root.runtime)
        anyio.run(runtime.kill, record.id, str(number))
        print(ref)

    return each(containers, one)
