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
