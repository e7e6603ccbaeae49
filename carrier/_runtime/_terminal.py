"""Interactive sessions: the environment of a login inside, and the local terminal's guard.

In a session the local terminal is in raw mode, so Ctrl-C, Ctrl-D and Ctrl-Z travel as bytes
to the PTY, whose line discipline inside turns them into signals for the process there. The
local settings are restored on every exit path Carrier can see: normal return, an exception,
cancellation, SIGTERM or SIGHUP, and a runtime that died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import termios
from collections.abc import Iterator
from pathlib import Path

from .._util._errors import CarrierError

_DEFAULT_TERMS = ("xterm", "vt100")


def terminfo_has(rootfs: Path, term: str) -> bool:
    """Whether the container's root filesystem has a terminfo entry for *term*."""
    if not term or "/" in term:
        return False
    for base in ("usr/share/terminfo", "lib/terminfo", "etc/terminfo", "usr/lib/terminfo"):
        for sub in (term[0], f"{ord(term[0]):x}"):
            if (rootfs / base / sub / term).exists():
                return True
    return False


def container_term(rootfs: Path, term: str | None) -> str:
    """Our ``$TERM`` if the container knows it, else xterm, else vt100."""
    for candidate in (term or "", *_DEFAULT_TERMS):
        if terminfo_has(rootfs, candidate):
            return candidate
    return _DEFAULT_TERMS[-1]


def passwd_entry(rootfs: Path, uid: int) -> tuple[str, str, str] | None:
    """(name, home, shell) for *uid* from the container's /etc/passwd."""
    try:
        lines = (rootfs / "etc" / "passwd").read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        f = line.split(":")
        if len(f) >= 7 and f[2] == str(uid):
            return f[0], f[5], f[6]
    return None


def session_env(rootfs: Path, uid: int, path: str, term: str | None, lang: str | None) -> list[str]:
    """The environment of an interactive session, as a login would set it."""
    name, home, shell = passwd_entry(rootfs, uid) or ("root" if uid == 0 else str(uid), "/", "/bin/sh")
    return [f"TERM={container_term(rootfs, term)}", f"HOME={home or '/'}", path,
            f"USER={name}", f"LOGNAME={name}", f"SHELL={shell or '/bin/sh'}",
            f"LANG={lang or 'C.UTF-8'}"]


@contextlib.contextmanager
def saved_terminal(fd: int) -> Iterator[None]:
    """Restore terminal *fd*'s settings when the block ends, however it ends.

    The runtime puts the terminal in raw mode for the session and resets it; this guards the
    paths where it cannot: it crashed or was killed, or we got SIGTERM or SIGHUP (whose
    handlers restore the settings, then die of the signal as before).
    """
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)

    def restore() -> None:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(fd, termios.TCSAFLUSH, saved)

    def on_signal(sig: int, frame: object) -> None:
        restore()
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        restore()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
"""Podman's and Docker's detach sequence."""
_CTRL_PUNCTUATION = "@[\\]^_"  # ctrl-@ is 0, ctrl-[ 27 ... ctrl-_ 31


def parse_detach_keys(text: str) -> bytes:
    """Podman's ``--detach-keys``: comma-separated ``ctrl-<x>`` (x a letter or one of
    ``@[\\]^_``) and single characters, as the bytes a terminal sends; ``""`` disables."""
    if text == "":
        return b""
    codes = bytearray()
    for key in text.split(","):
        lower = key.lower()
        if len(key) == 1 and key.isascii():
            codes.append(ord(key))
        elif lower.startswith("ctrl-") and len(lower) == 6 and "a" <= lower[5] <= "z":
            codes.append(ord(lower[5]) - ord("a") + 1)
        elif lower.startswith("ctrl-") and len(lower) == 6 and lower[5] in _CTRL_PUNCTUATION:
            codes.append(0 if lower[5] == "@" else 27 + _CTRL_PUNCTUATION.index(lower[5]) - 1)
        else:
            raise CarrierError(f"invalid --detach-keys {text!r}: unknown key {key!r} (expected "
                               "ctrl-<letter>, ctrl-@, ctrl-[, ctrl-\\, ctrl-], ctrl-^, ctrl-_ "
                               "or one character, comma-separated)")
    return bytes(codes)


class DetachKeys:
    """Watches typed input for the detach sequence: what :meth:`feed` returns goes on to the
    container; a prefix of the sequence is held back until it is known not to be one."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self._held = 0  # how many bytes of the sequence have been typed so far

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to pass on, and whether the whole sequence was typed (the rest of *data*
        after it is dropped, as the session ends)."""
        if not self.keys:
            return data, False
        out = bytearray()
        for byte in data:
            if byte == self.keys[self._held]:
                self._held += 1
                if self._held == len(self.keys):
                    self._held = 0
                    return bytes(out), True
                continue
            out += self.keys[:self._held]  # not the sequence after all: typed as it was
            self._held = 1 if byte == self.keys[0] else 0
            if not self._held:
                out.append(byte)
        return bytes(out), False
