"""Entering a holder's namespaces from outside: ``nsenter`` command lines for tools, and sockets
made inside the holder's network namespace by a short-lived forked child.

The supervisor cannot ``setns`` into a user namespace itself (that needs a single-threaded
process), so a forked child joins the holder's user and network namespaces, creates the sockets
there and hands them back over a socketpair. A socket stays bound to the namespace it was
created in.
"""

from __future__ import annotations

import ctypes
import os
import socket

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter_argv(pid: int, *, userns: bool, mount: bool = True) -> list[str]:
    """``nsenter`` into holder *pid*'s user and/or mount namespace, keeping our credentials
    (inside a user namespace they read as its root); nothing if neither is asked for."""
    if not (userns or mount):
        return []
    argv = ["nsenter", "-t", str(pid)]
    if mount:
        argv.append("-m")
    return [*argv, "-U", "--preserve-credentials"] if userns else argv


def sockets_in(holder_pid: int, kinds: list[tuple[int, int, int]], *,
               join_user: bool) -> list[socket.socket]:
    """Create sockets of the given (family, type, proto) kinds inside *holder_pid*'s network
    namespace and return them; they stay bound to that namespace."""
    count = len(kinds)
    ns_fds = []
    try:
        if join_user:
            ns_fds.append((os.open(f"/proc/{holder_pid}/ns/user", os.O_RDONLY), _CLONE_NEWUSER))
        ns_fds.append((os.open(f"/proc/{holder_pid}/ns/net", os.O_RDONLY), _CLONE_NEWNET))
    except OSError:
        for fd, _ in ns_fds:
            os.close(fd)
        raise
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked child
            status = 1
            try:
                for fd, nstype in ns_fds:
                    if _libc.setns(fd, nstype) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                socks = [socket.socket(*kind) for kind in kinds]
                socket.send_fds(child, [b"ok"], [s.fileno() for s in socks])
                status = 0
            finally:
                os._exit(status)
        child.close()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise OSError(f"cannot enter the network namespace of process {holder_pid}")
        _, fds, _, _ = socket.recv_fds(parent, 16, count)
        return [socket.socket(fileno=fd) for fd in fds]
    finally:
        parent.close()
        child.close()
        for fd, _ in ns_fds:
            os.close(fd)
