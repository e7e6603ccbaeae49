"""Files into and out of a running container from the library (``copy_to``, ``copy_from``),
rootless, with the real parts, on both event loops and through ``carrier.sync``."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from conftest import Carrier

import carrier
import carrier.sync

pytestmark = pytest.mark.anyio

SLEEPER = ["sleep", "600"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both event loops."""
    return str(request.param)


async def test_round_trip_of_a_file_and_a_directory(cli: Carrier, image: str,
                                                    tmp_path: Path) -> None:
    """A host file and a host directory go in and come back out unchanged, placed as
    ``carrier cp`` places them."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.txt").write_text("beta\n")
    one = tmp_path / "one.txt"
    one.write_text("one\n")
    out = tmp_path / "out"
    out.mkdir()
    async with carrier.run(image, SLEEPER, root=cli.root, stop_timeout=0.5) as c:
        await c.copy_to(one, "/tmp/renamed.txt")
        await c.copy_to(str(src), "/tmp")
        listing = await c.exec(["sh", "-c", "cat /tmp/renamed.txt /tmp/src/a.txt /tmp/src/sub/b.txt"])
        assert listing.stdout == b"one\nalpha\nbeta\n", listing
        await c.copy_from("/tmp/src", out)
        await c.copy_from("/tmp/renamed.txt", out / "back.txt")
    assert (out / "src" / "a.txt").read_text() == "alpha\n"
    assert (out / "src" / "sub" / "b.txt").read_text() == "beta\n"
    assert (out / "back.txt").read_text() == "one\n"


async def test_bytes_become_a_file_with_its_mode(cli: Carrier, image: str) -> None:
    """Bytes are written as the file named by the destination, with the given mode."""
    async with carrier.run(image, SLEEPER, root=cli.root, stop_timeout=0.5) as c:
        await c.copy_to(b"#!/bin/sh\necho run\n", "/tmp/job", mode=0o755)
        result = await c.exec(["sh", "-c", "stat -c %a /tmp/job && /tmp/job"])
    assert result.stdout == b"755\nrun\n", result


async def test_a_tar_stream_unpacks_into_a_directory(cli: Carrier, image: str) -> None:
    """A tar stream (a binary file object) is unpacked into the destination directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("x.txt", b"x\n"), ("y.txt", b"y\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    async with carrier.run(image, SLEEPER, root=cli.root, stop_timeout=0.5) as c:
        await c.exec(["mkdir", "/srv"])
        await c.copy_to(buf, "/srv")
        result = await c.exec(["cat", "/srv/x.txt", "/srv/y.txt"])
    assert result.stdout == b"x\ny\n", result


async def test_paths_resolve_inside_the_container(cli: Carrier, image: str,
                                                  tmp_path: Path) -> None:
    """A symlink in the container naming a host directory does not lead the copy there, and a
    symlink copied out stays a symlink."""
    victim = tmp_path / "victim"
    victim.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    async with carrier.run(image, SLEEPER, root=cli.root, stop_timeout=0.5) as c:
        await c.exec(["sh", "-c", f"mkdir -p {victim} && ln -s {victim} /escape && "
                                  "ln -s /etc/passwd /link"])
        await c.copy_to(b"planted", "/escape/file")
        await c.copy_from("/link", out)
        inside = await c.exec(["cat", f"{victim}/file"])
    assert inside.stdout == b"planted"  # written in the container's own directory of that name
    assert not (victim / "file").exists()
    assert (out / "link").is_symlink()
    assert str((out / "link").readlink()) == "/etc/passwd"


async def test_failures_are_one_line_errors(cli: Carrier, image: str, tmp_path: Path) -> None:
    """A missing source, in the container or on the host, and a stopped container each raise
    a one-line CarrierError and copy nothing."""
    dest = tmp_path / "dest"
    dest.mkdir()
    async with carrier.run(image, SLEEPER, root=cli.root, stop_timeout=0.5) as c:
        with pytest.raises(carrier.CarrierError, match="no such file") as e:
            await c.copy_from("/nope", dest)
        assert "\n" not in str(e.value)
        with pytest.raises(carrier.CarrierError, match="no such file"):
            await c.copy_to(tmp_path / "nope", "/tmp")
    with pytest.raises(carrier.CarrierError, match="not running"):
        await c.copy_to(b"late", "/tmp/late")
    assert list(dest.iterdir()) == []


def test_sync_facade_copies(cli: Carrier, image: str, tmp_path: Path) -> None:
    """carrier.sync's container copies in and out like the async one."""
    with carrier.sync.run(image, SLEEPER, root=cli.root, stop_timeout=0.5) as c:
        c.copy_to(b"hello\n", "/tmp/greeting")
        c.copy_from("/tmp/greeting", tmp_path)
    assert (tmp_path / "greeting").read_text() == "hello\n"
