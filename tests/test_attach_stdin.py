"""``run -di`` and ``attach`` passing stdin, as Podman (issue #13): a detached ``-i`` container's
stdin is a pipe its supervisor holds; attach writes to it and the end of attach's input is the
container's EOF; a container started without ``-i`` takes no keys."""

from __future__ import annotations

import subprocess
import time

from conftest import Carrier


def _attach(carrier: Carrier, name: str) -> subprocess.Popen[bytes]:
    """``carrier attach NAME`` started, its stdin and stdout pipes of bytes."""
    return subprocess.Popen(carrier.argv("attach", name), env=carrier.env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)


def _seen(proc: subprocess.Popen[bytes], marker: bytes, bound: float = 20) -> bytes:
    """Read *proc*'s stdout until *marker* shows (bounded; a guard, not a wait)."""
    import select

    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + bound
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {marker!r}: {seen!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = proc.stdout.read1(65536)
            assert chunk, f"output ended before {marker!r}: {seen!r}"
            seen += chunk
    return seen


def test_di_attach_passes_stdin_until_eof(carrier: Carrier, image: str) -> None:
    """attach to ``run -di`` passes our stdin to the container's, and the end of our input is
    its EOF: it exits, and attach with its exit code."""
    script = "while read l; do echo got-$l; done; echo eof; exit 4"
    assert carrier("run", "-di", "--name", "i", image, "sh", "-c", script).code == 0
    res = carrier("attach", "i", stdin="a\nb\n")
    assert (res.code, res.out) == (4, "got-a\ngot-b\neof\n"), res.err
    assert carrier("rm", "i").code == 0


def test_di_stdin_waits_for_an_attach(carrier: Carrier, image: str) -> None:
    """A ``run -di`` container's stdin stays open with nobody attached (its read waits, as
    Podman's): a detached attach leaves it open, and a later attach still reaches it."""
    script = "read a; echo first-$a; read b; echo second-$b"
    assert carrier("run", "-di", "--name", "w", image, "sh", "-c", script).code == 0
    one = _attach(carrier, "w")
    assert one.stdin is not None
    one.stdin.write(b"x\n")
    one.stdin.flush()
    _seen(one, b"first-x")
    one.stdin.write(b"\x10\x11")  # ctrl-p ctrl-q: detach, the container's stdin stays open
    one.stdin.close()
    assert one.wait(timeout=30) == 0
    assert one.stdout is not None
    one.stdout.close()
    assert carrier.record("w")["status"] == "running"
    res = carrier("attach", "w", stdin="y\n")
    assert (res.code, res.out) == (0, "second-y\n"), res.err
    assert carrier("rm", "w").code == 0


def test_t_without_i_takes_no_keys(carrier: Carrier, image: str) -> None:
    """A ``-t`` container started without ``-i`` takes no keys on attach (as Podman): the
    detach keys typed are not read, and attach ends with the container's exit code."""
    assert carrier("run", "-dt", "--name", "t", image, "sh", "-c",
                   "trap 'exit 7' TERM; while :; do sleep 0.1; done").code == 0
    att = _attach(carrier, "t")
    assert att.stdin is not None
    for _ in range(200):  # bounded: until the session is on (output from now on reaches it)
        assert carrier("exec", "t", "sh", "-c", "echo on-air > /proc/1/fd/1").code == 0
        try:
            _seen(att, b"on-air", bound=0.5)
            break
        except AssertionError:
            continue
    att.stdin.write(b"\x10\x11")  # would detach if keys were read
    att.stdin.close()
    assert carrier("stop", "t").code == 0
    assert att.wait(timeout=30) == 7
    assert att.stdout is not None
    att.stdout.close()
    assert carrier("rm", "t").code == 0


def test_plain_d_has_no_stdin(carrier: Carrier, image: str) -> None:
    """Without ``-i`` a detached container's stdin is /dev/null, as before: it reads EOF at
    once."""
    res = carrier("run", "--name", "n", "-d", image, "sh", "-c", "cat; echo cat-$?")
    assert res.code == 0, res.err
    assert carrier("wait", "n").out.strip() == "0"
    assert carrier("logs", "n").out == "cat-0\n"
    assert carrier("rm", "n").code == 0
