"""The TCP relay process: published TCP ports for helpers that cannot carry them well.

It runs **inside** the container's network namespace (``nsenter``) and inherits listening
sockets that the supervisor bound in the host's namespace. A socket stays in the namespace it
was created in, so ``accept`` yields host-side connections while every new socket this process
creates, and ``connect``s, is inside: one process bridges the two without any per-connection
help. One level-triggered epoll loop moves the bytes (``recv_into``/``send``, no threads),
which measured 2x faster than threads, anyio or ``systemd-socket-proxyd`` (docs/performance.md).

Each connection goes to the container's own address and, if nothing listens there, to its
127.0.0.1, so a server bound to either or to the wildcard is reached. A half-close is passed on
(``shutdown(SHUT_WR)`` once the buffered bytes are out) and a reset is passed on as a reset.
The process ends when the supervisor's pipe (``--exit-fd``) closes, so it never outlives it.

Standard library only: it runs as ``python -I -S _tcprelay.py`` (no site, fast to start).
"""

from __future__ import annotations

import errno
import resource
import select
import socket
import struct
import sys
import time

_READ, _WRITE = select.EPOLLIN, select.EPOLLOUT
_BUFFER = 1 << 18  # one recv: large enough for bulk transfers, reused for every connection
_ACCEPT_BATCH = 64  # connections accepted per wake-up before the others get a turn
_REFUSED = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTUNREACH)
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _Side:
    """One socket of a relayed connection and what is still owed to it."""

    __slots__ = ("connecting", "eof", "fd", "mask", "peer", "pending", "port", "shut", "sock", "tries")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer: _Side = self
        self.pending = b""  # bytes read from the peer that this socket has not taken yet
        self.eof = False  # this socket's reader has seen end of stream
        self.shut = False  # this socket's write side is shut (the peer's half-close passed on)
        self.connecting = False
        self.mask: int | None = None  # what epoll watches for it; None: not registered
        self.port = 0
        self.tries: list[str] = []  # addresses still to try if this connect is refused


class Relay:
    """The event loop: listening sockets in, pairs of sockets relayed, until *exit_fd* closes."""

    def __init__(self, listeners: dict[int, int], addresses: list[str], exit_fd: int | None) -> None:
        """*listeners* maps a listening socket's fd to its container port; *addresses* are tried
        in order for each connection."""
        self.epoll = select.epoll()
        self.listeners = {fd: (socket.socket(fileno=fd), port) for fd, port in listeners.items()}
        self.addresses = addresses
        self.exit_fd = exit_fd
        self.sides: dict[int, _Side] = {}
        self.buffer = bytearray(_BUFFER)
        self.view = memoryview(self.buffer)
        self.accepting = True
        for fd, (sock, _) in self.listeners.items():
            sock.setblocking(False)
            self.epoll.register(fd, _READ)
        if exit_fd is not None:
            self.epoll.register(exit_fd, _READ)

    def run(self) -> None:
        """Relay until the exit pipe closes (its reader sees EOF or an error)."""
        while True:
            for fd, events in self.epoll.poll():
                if fd == self.exit_fd:
                    return
                if fd in self.listeners:
                    self._accept(fd)
                elif (side := self.sides.get(fd)) is not None:
                    self._event(side, events)

    def _accept(self, fd: int) -> None:
        listener, port = self.listeners[fd]
        for _ in range(_ACCEPT_BATCH):
            try:
                client, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting()
                    return
                continue  # the client gave up before we took it (ECONNABORTED and the like)
            try:
                client.setblocking(False)
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                inner = self._connect(port, list(self.addresses))
            except OSError as e:
                _reset(client)
                if e.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting()
                    return
                continue
            if inner is None:
                _reset(client)
                continue
            outer = _Side(client)
            outer.peer, inner.peer = inner, outer
            self.sides[outer.fd] = outer
            self.sides[inner.fd] = inner
            self._update(outer)
            self._update(inner)

    def _connect(self, port: int, addresses: list[str]) -> _Side | None:
        """Start connecting a new socket (made here, so inside) to the first address that does
        not refuse at once; the rest are kept for a refusal that comes later."""
        while addresses:
            address = addresses.pop(0)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = sock.connect_ex((address, port))
            if err in (0, errno.EINPROGRESS):
                side = _Side(sock)
                side.connecting, side.port, side.tries = err != 0, port, addresses
                return side
            sock.close()
        return None

    def _connected(self, side: _Side) -> None:
        """The inner connect finished: go on, try the next address, or reset the client."""
        err = side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            side.connecting = False
            self._update(side)
            self._update(side.peer)
            return
        try:
            replacement = self._connect(side.port, side.tries) if err in _REFUSED else None
        except OSError:  # out of descriptors or memory: this connection fails, not the relay
            replacement = None
        outer = side.peer
        self._forget(side)
        side.sock.close()
        if replacement is None:
            self._forget(outer)
            _reset(outer.sock)
            self._resume_accepting()
            return
        outer.peer, replacement.peer = replacement, outer
        self.sides[replacement.fd] = replacement
        self._update(replacement)

    def _event(self, side: _Side, events: int) -> None:
        if side.connecting:
            self._connected(side)
            return
        peer = side.peer
        try:
            if side.pending and events & (_WRITE | select.EPOLLERR | select.EPOLLHUP):
                sent = side.sock.send(side.pending)
                side.pending = side.pending[sent:]
            if self._readable(side) and events & (_READ | select.EPOLLERR | select.EPOLLHUP):
                n = side.sock.recv_into(self.buffer)
                if n == 0:
                    side.eof = True
                else:
                    try:
                        sent = peer.sock.send(self.view[:n])
                    except BlockingIOError:
                        sent = 0
                    if sent < n:
                        peer.pending = bytes(self.view[sent:n])
            for s in (side, peer):  # pass a half-close on once everything before it is out
                if s.peer.eof and not s.pending and not s.shut:
                    s.sock.shutdown(socket.SHUT_WR)
                    s.shut = True
        except BlockingIOError:
            pass
        except OSError:  # a reset or a broken pipe on either side: reset the other
            self._abort(side)
            return
        if side.eof and peer.eof and not side.pending and not peer.pending:
            self._close(side)
            return
        self._update(side)
        self._update(peer)

    def _readable(self, side: _Side) -> bool:
        """Read from *side* only when its peer is connected and has taken everything so far."""
        peer = side.peer
        return not side.eof and not peer.pending and not peer.connecting

    def _update(self, side: _Side) -> None:
        """Watch what *side* waits for; a socket that waits for nothing is taken out of the
        set, since epoll reports a hang-up even with an empty mask and would spin."""
        if side.connecting:
            mask = _WRITE
        else:
            mask = (_READ if self._readable(side) else 0) | (_WRITE if side.pending else 0)
        if mask == side.mask or (mask == 0 and side.mask is None):
            return
        if mask == 0:
            self.epoll.unregister(side.fd)
            side.mask = None
        elif side.mask is None:
            self.epoll.register(side.fd, mask)
            side.mask = mask
        else:
            self.epoll.modify(side.fd, mask)
            side.mask = mask

    def _forget(self, side: _Side) -> None:
        if side.mask is not None:
            self.epoll.unregister(side.fd)
            side.mask = None
        self.sides.pop(side.fd, None)

    def _close(self, side: _Side) -> None:
        for s in (side, side.peer):
            self._forget(s)
            s.sock.close()
        self._resume_accepting()

    def _abort(self, side: _Side) -> None:
        """*side* failed: close it and reset its peer, so the other end learns of it."""
        peer = side.peer
        self._forget(side)
        self._forget(peer)
        side.sock.close()
        _reset(peer.sock)
        self._resume_accepting()

    def _pause_accepting(self) -> None:
        """Out of descriptors or memory: stop accepting until a connection closes and frees
        some. With none open to wait for, back off briefly instead (bounded, 20 times a
        second), since the listeners stay ready."""
        if not self.sides:
            time.sleep(0.05)
        elif self.accepting:
            for fd in self.listeners:
                self.epoll.unregister(fd)
            self.accepting = False

    def _resume_accepting(self) -> None:
        if not self.accepting:
            for fd in self.listeners:
                self.epoll.register(fd, _READ)
            self.accepting = True


def _reset(sock: socket.socket) -> None:
    """Close with a reset (RST), not an orderly end: the other end must not take a failure for
    a complete answer."""
    try:  # noqa: SIM105 - contextlib would be one more module to load in every forwarder
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def main(argv: list[str]) -> int:
    """``_tcprelay.py --exit-fd FD --address ADDR [--address ADDR...] LISTEN_FD:PORT...``
    (parsed by hand: argparse alone would add a megabyte to every forwarder)."""
    exit_fd: int | None = None
    addresses: list[str] = []
    listeners: dict[int, int] = {}
    args = iter(argv)
    for arg in args:
        if arg == "--exit-fd":
            exit_fd = int(next(args))
        elif arg == "--address":
            addresses.append(next(args))
        else:
            fd, _, port = arg.partition(":")
            listeners[int(fd)] = int(port)
    if not addresses or not listeners:
        print(main.__doc__, file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:  # two descriptors per connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    Relay(listeners, addresses, exit_fd).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
