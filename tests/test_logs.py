"""Container logs: stdout and stderr kept apart and stamped, ``logs`` filters and follows them,
foreground runs are logged too, the log rotates, and the library reads it as it grows."""

from __future__ import annotations

import datetime as dt
import re
import select
import subprocess
from pathlib import Path

import pytest
from conftest import Carrier

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"
# Prints its first line, then waits for /tmp/go (made by `carrier exec`) before the rest; bounded
# by at least two minutes, the tests' own timeout, so that it never outlives a hung test.
GATED = "echo first; i=0; while [ ! -e /tmp/go ] && [ $i -lt 12000 ]; do sleep 0.01; i=$((i+1)); done; "


def container_dir(carrier: Carrier, name: str) -> Path:
    """The directory of container *name*."""
    return Path(str(carrier.record(name)["Dir"]))


def wait_done(carrier: Carrier, name: str) -> None:
    """Wait until container *name* has ended (``carrier wait``)."""
    res = carrier("wait", name)
    assert res.code == 0, res.err


def read_line(proc: subprocess.Popen[str], bound: float = 20) -> str:
    """The next line *proc* writes on stdout (a guard against a hang, not a wait)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], bound)
    assert ready, "no line within the bound"
    return proc.stdout.readline()


def test_streams_apart(carrier: Carrier, image: str) -> None:
    """``logs`` writes the container's stdout to stdout and its stderr to stderr, byte for byte,
    a line written in parts included."""
    script = "echo out1; echo err1 >&2; printf part; echo rest; printf 'err2' >&2"
    assert carrier("run", "-d", "--name", "s", image, "sh", "-c", script).code == 0
    wait_done(carrier, "s")
    res = carrier("logs", "s")
    assert (res.code, res.out, res.err) == (0, "out1\npartrest\n", "err1\nerr2")
    records = (container_dir(carrier, "s") / "ctr.log").read_text().splitlines()
    assert all(re.fullmatch(STAMP + r" (stdout|stderr) [FP] .*", r) for r in records), records
    carrier("rm", "s")


def test_timestamps_tail_since_until(carrier: Carrier, image: str) -> None:
    """``-t`` puts each line's RFC 3339 time first; ``--since``/``--until`` (a time or a
    duration) and ``--tail`` choose lines by those times and by count."""
    go = carrier.popen("run", "-d", "--name", "t", image, "sh", "-c", GATED + "echo second >&2",
                       stdout=subprocess.PIPE)
    assert go.wait(60) == 0
    follow = carrier.popen("logs", "-f", "t", stdout=subprocess.PIPE)
    assert read_line(follow) == "first\n"  # logged: the second line is written after this
    assert carrier("exec", "t", "touch", "/tmp/go").code == 0
    follow.wait(60)
    wait_done(carrier, "t")
    res = carrier("logs", "-t", "t")
    assert re.fullmatch(f"({STAMP}) first\n", res.out), res.out
    assert re.fullmatch(f"({STAMP}) second\n", res.err), res.err
    first, second = res.out.split()[0], res.err.split()[0]
    assert first < second
    assert carrier("logs", "--since", second, "t").out == ""
    assert carrier("logs", "--since", second, "t").err == "second\n"
    assert (carrier("logs", "--until", first, "t").out, carrier("logs", "--until", first, "t").err) \
        == ("first\n", "")
    both = carrier("logs", "--since", "10m", "t")
    assert (both.out, both.err) == ("first\n", "second\n")
    assert carrier("logs", "--until", "10m", "t").out == ""
    tail = carrier("logs", "--tail", "1", "t")
    assert (tail.out, tail.err) == ("", "second\n")
    carrier("rm", "t")


def test_follow_with_tail(carrier: Carrier, image: str) -> None:
    """``logs -f --tail N -t`` prints the last N lines, then each new one (stamped, on its
    stream) as it comes, and ends when the container's supervisor has ended."""
    script = "echo zero; " + GATED + "echo later; echo oops >&2"
    assert carrier("run", "-d", "--name", "f", image, "sh", "-c", script).code == 0
    follow = carrier.popen("logs", "-f", "--tail", "1", "-t", "f", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    assert re.fullmatch(f"{STAMP} first\n", read_line(follow))
    assert carrier("exec", "f", "touch", "/tmp/go").code == 0
    assert re.fullmatch(f"{STAMP} later\n", read_line(follow))
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 0
    assert out == ""
    assert re.fullmatch(f"{STAMP} oops\n", err), err
    carrier("rm", "f")


def test_foreground_run_is_logged(carrier: Carrier, image: str) -> None:
    """A foreground run's output reaches our stdout and stderr as before and is logged too,
    its streams apart."""
    res = carrier("run", "--name", "fg", image, "sh", "-c", "echo o; echo e >&2; exit 3")
    assert (res.code, res.out, res.err) == (3, "o\n", "e\n")
    logs = carrier("logs", "fg")
    assert (logs.code, logs.out, logs.err) == (0, "o\n", "e\n")
    carrier("rm", "fg")


def test_older_log_format_is_read(carrier: Carrier, image: str) -> None:
    """A log written before streams were kept apart (raw ``container.log``) is still shown,
    as stdout, with its file's time under ``-t``."""
    assert carrier("run", "--name", "old", image, "true").code == 0
    cdir = container_dir(carrier, "old")
    (cdir / "ctr.log").unlink(missing_ok=True)
    (cdir / "container.log").write_bytes(b"legacy 1\nlegacy 2")
    res = carrier("logs", "old")
    assert (res.code, res.out, res.err) == (0, "legacy 1\nlegacy 2", "")
    stamped = carrier("logs", "-t", "old").out
    assert re.fullmatch(f"{STAMP} legacy 1\n{STAMP} legacy 2", stamped), stamped
    carrier("rm", "old")


@pytest.mark.parametrize("value", ["yesterday", "10x", "2026-13-40T00:00:00Z"])
def test_bad_since(carrier: Carrier, image: str, value: str) -> None:
    """A time ``--since`` cannot read is refused in one line, exit 125."""
    assert carrier("run", "--name", "b", image, "true").code == 0
    res = carrier("logs", "--since", value, "b")
    assert res.code == 125
    assert res.err.startswith("carrier: invalid --since")
    assert res.err.count("\n") == 1
    carrier("rm", "b")


def test_timestamps_are_utc_now(carrier: Carrier, image: str) -> None:
    """The stamps are the wall-clock time of the output, in UTC."""
    before = dt.datetime.now(dt.UTC)
    assert carrier("run", "--name", "u", image, "echo", "x").code == 0
    stamp = carrier("logs", "-t", "u").out.split()[0]
    when = dt.datetime.fromisoformat(stamp[:26] + "+00:00")
    assert before - dt.timedelta(seconds=1) <= when <= dt.datetime.now(dt.UTC)
    carrier("rm", "u")



def test_rotation_keeps_max_file(carrier: Carrier, image: str) -> None:
    """``--log-opt max-size=16k --log-opt max-file=3`` keeps three files of about 16 KiB, and
    ``logs`` reads across them: the newest lines, in order, none missing in between."""
    script = "seq 1 20000"
    assert carrier("run", "--name", "r", "--log-opt", "max-size=16k", "--log-opt", "max-file=3",
                   image, "sh", "-c", script).code == 0
    cdir = container_dir(carrier, "r")
    names = sorted(p.name for p in cdir.glob("ctr.log*"))
    assert names == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    assert all(p.stat().st_size < 16 * 1024 + 64 * 1024 for p in cdir.glob("ctr.log*"))
    shown = [int(n) for n in carrier("logs", "r").out.split()]
    in_current = len((cdir / "ctr.log").read_text().splitlines())
    assert shown == list(range(20001 - len(shown), 20001))
    assert len(shown) > in_current  # the rotated files were read too
    carrier("rm", "r")


def test_follow_across_rotations(carrier: Carrier, image: str) -> None:
    """``logs -f`` follows the log as it rotates many times: every line, in order, once."""
    script = GATED + "seq 1 5000"
    assert carrier("run", "-d", "--name", "fr", "--log-opt", "max-size=8k", "--log-opt",
                   "max-file=1000", image, "sh", "-c", script).code == 0
    follow = carrier.popen("logs", "-f", "fr", stdout=subprocess.PIPE)
    assert read_line(follow) == "first\n"
    assert carrier("exec", "fr", "touch", "/tmp/go").code == 0
    out, _ = follow.communicate(timeout=60)
    assert out.split() == [str(n) for n in range(1, 5001)]
    assert len(list(container_dir(carrier, "fr").glob("ctr.log.*"))) > 3
    carrier("rm", "fr")


def test_rotation_with_one_file(carrier: Carrier, image: str) -> None:
    """``max-size`` alone (``max-file`` 1, Docker's default) keeps just the current file,
    started over at each rotation."""
    assert carrier("run", "--name", "one", "--log-opt", "max-size=4k", image, "seq", "1", "5000").code == 0
    cdir = container_dir(carrier, "one")
    assert [p.name for p in cdir.glob("ctr.log*")] == ["ctr.log"]
    shown = [int(n) for n in carrier("logs", "one").out.split()]
    assert 0 < len(shown) < 5000
    assert shown == list(range(5001 - len(shown), 5001))
    carrier("rm", "one")


@pytest.mark.parametrize("opt", ["max-size=lots", "max-size=0", "max-file=0", "max-file=2",
                                 "colour=blue", "max-size"])
def test_bad_log_opt(carrier: Carrier, image: str, opt: str) -> None:
    """A ``--log-opt`` Carrier cannot honour is refused in one line, exit 125, and no
    container is created."""
    res = carrier("run", "--log-opt", opt, image, "true")
    assert res.code == 125
    assert res.err.startswith("carrier: invalid --log-opt")
    assert res.err.count("\n") == 1
    containers = carrier.root / "containers"
    assert not containers.exists() or not any(containers.iterdir())


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The library tests run on both event loops."""
    return str(request.param)


@pytest.mark.anyio
async def test_library_logs_follow(cli: Carrier, image: str) -> None:
    """``Container.logs(follow=True)`` yields each line with its stream as it is written (the
    first before the rest exists) and ends when the container has ended; ``stdout=False``
    leaves stdout out."""
    import anyio

    import carrier

    script = GATED + "echo second >&2; echo third"
    async with carrier.run(image, ["sh", "-c", script], root=cli.root, network="none") as c:
        seen: list[tuple[str, str]] = []
        with anyio.fail_after(60):  # a guard, not a wait
            async for line in c.logs(follow=True):
                seen.append((line.stream, line.text))
                if line.text == "first":
                    await c.exec(["touch", "/tmp/go"])
        # Each stream in order; between the two, the order is the supervisor's reads (as conmon's).
        assert [t for s, t in seen if s == "stdout"] == ["first", "third"]
        assert [t for s, t in seen if s == "stderr"] == ["second"]
        assert [line.text async for line in c.logs(stdout=False)] == ["second"]
        assert all([isinstance(line, carrier.LogLine) async for line in c.logs()])


@pytest.mark.anyio
async def test_log_line_is_woken_not_polled(cli: Carrier, image: str) -> None:
    """``log_line`` readiness is woken by the new output itself: with a probe interval of an
    hour it still returns as soon as the line is written."""
    import anyio

    import carrier

    async with carrier.run(image, ["sh", "-c", GATED + "echo ready; sleep 100"], root=cli.root,
                           network="none", stop_timeout=0) as c:
        done = anyio.Event()

        async def ready() -> None:
            await c.wait_for(carrier.log_line("^ready$"), timeout=3600, interval=3600)
            done.set()

        with anyio.fail_after(60):  # a guard, not a wait
            async with anyio.create_task_group() as tg:
                tg.start_soon(ready)
                await c.exec(["touch", "/tmp/go"])  # the condition was probed before this
                await done.wait()


@pytest.mark.anyio
async def test_logs_outlive_a_removed_container(cli: Carrier, image: str) -> None:
    """After the block of a ``remove=True`` container has ended and its files are gone, its
    last lines can still be read, streams apart."""
    import carrier

    async with carrier.run(image, ["sh", "-c", "echo out; echo err >&2; printf end"],
                           root=cli.root, network="none", remove=True) as c:
        await c.wait()
    assert not any((cli.root / "containers").iterdir())
    lines = [(line.stream, line.text) async for line in c.logs()]
    assert sorted(lines) == [("stderr", "err"), ("stdout", "end"), ("stdout", "out")]
    assert [line.text async for line in c.logs(follow=True, stderr=False)] == ["out", "end"]


@pytest.mark.anyio
async def test_library_stdio_is_logged_too(cli: Carrier, image: str, tmp_path: Path) -> None:
    """Output sent to a caller's file (``stdio=``) reaches the file whole and the log too."""
    import carrier

    out = tmp_path / "out"
    with out.open("wb") as f:
        async with carrier.run(image, ["sh", "-c", "echo hi; echo there >&2"], root=cli.root,
                               network="none", stdio=carrier.Stdio(stdout=f)) as c:
            await c.wait()
            logged = [(line.stream, line.text) async for line in c.logs()]
    assert out.read_bytes() == b"hi\n"
    assert sorted(logged) == [("stderr", "there"), ("stdout", "hi")]


@pytest.mark.anyio
async def test_exec_stream(cli: Carrier, image: str) -> None:
    """``exec_stream`` gives the command's stdout and stderr as streams read while it runs (its
    first line arrives before it has its input), stdin as a stream, and its exit status."""
    import anyio

    import carrier

    script = "echo one; read x; echo two >&2; echo got $x; exit 5"
    async with carrier.run(image, ["sleep", "100"], root=cli.root, network="none",
                           stop_timeout=0) as c:
        with anyio.fail_after(60):  # a guard, not a wait
            async with c.exec_stream(["sh", "-c", script], stdin=True) as proc:
                assert isinstance(proc, carrier.ExecProcess)
                assert await proc.stdout.receive() == b"one\n"  # it now waits for input
                assert proc.stdin is not None
                await proc.stdin.send(b"three\n")
                await proc.stdin.aclose()
                err = b"".join([chunk async for chunk in proc.stderr])
                out = b"".join([chunk async for chunk in proc.stdout])
                assert await proc.wait() == 5
    assert (out, err) == (b"got three\n", b"two\n")


@pytest.mark.anyio
async def test_exec_stream_block_end_kills(cli: Carrier, image: str) -> None:
    """Leaving an ``exec_stream`` block ends a command that still runs (nothing is left
    inside), and a command past its timeout raises ``ExecTimeoutError`` from ``wait``."""
    import anyio

    import carrier

    async with carrier.run(image, ["sleep", "100"], root=cli.root, network="none",
                           stop_timeout=0) as c:
        with anyio.fail_after(60):  # a guard, not a wait
            async with c.exec_stream(["sh", "-c", "echo up; exec sleep 1000"]) as proc:
                assert await proc.stdout.receive() == b"up\n"
            assert proc.returncode is None
            ps = await c.exec(["ps", "-o", "args"])
            assert b"sleep 1000" not in ps.stdout, ps.stdout
            async with c.exec_stream(["sleep", "1000"], timeout=0.2) as late:
                with pytest.raises(carrier.ExecTimeoutError):
                    await late.wait()


def test_reader_catches_up_across_several_rotations(tmp_path: Path) -> None:
    """A reader that was not looking while the log rotated several times reads every file
    it missed, in order, and then the new one: no line skipped or repeated."""
    from carrier._supervision._logreader import Cursor, Joiner
    from carrier._supervision._logwriter import LogWriter

    writer = LogWriter(tmp_path, max_size=200, max_file=50)
    cursor = Cursor(tmp_path)
    writer.write("stdout", b"0\n")
    seen = list(Joiner().feed(cursor.read()))
    for n in range(1, 60):  # about 15 rotations while the reader is away
        writer.write("stdout" if n % 2 else "stderr", f"{n}\n".encode())
    seen += Joiner().feed(cursor.read())
    cursor.close()
    writer.close()
    assert len(list(tmp_path.glob("ctr.log.*"))) > 3
    assert [int(line.data) for line in seen] == list(range(60))


def test_foreground_reader_going_away_ends_the_writer(carrier: Carrier, image: str) -> None:
    """When whoever reads a foreground run's stdout goes away (``run IMG yes | head -1``), the
    container's writes fail as they would on that pipe itself, so it ends (EPIPE)."""
    proc = carrier.popen("run", "--rm", image, "yes", stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    assert read_line(proc) == "y\n"
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.wait(timeout=60) != 0  # a guard: before, it ran (and logged) for ever


@pytest.mark.anyio
async def test_library_log_opt(cli: Carrier, image: str) -> None:
    """``carrier.run(log_opt=[...])`` rotates as ``--log-opt`` does, ``logs()`` reads across
    the files, and a bad value is refused before anything is created."""
    import carrier

    async with carrier.run(image, ["seq", "1", "2000"], root=cli.root, network="none",
                           log_opt=["max-size=2k", "max-file=3"]) as c:
        await c.wait()
        shown = [int(line.data) async for line in c.logs()]
    assert 0 < len(shown) < 2000
    assert shown == list(range(2001 - len(shown), 2001))
    with pytest.raises(carrier.CarrierError, match="invalid --log-opt"):
        async with carrier.run(image, ["true"], root=cli.root, log_opt=["max-size=lots"]):
            pass
    assert not any((cli.root / "containers").iterdir())
