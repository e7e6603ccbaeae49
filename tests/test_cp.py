"""``carrier cp`` both ways, rootless, against real containers of every storage driver, and the
tar safety rules on the host's side."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Carrier

from carrier._storage._transfer import unpack
from carrier._util._errors import CarrierError

DRIVERS = ["overlay", "fuse-overlayfs", "copy"]


@pytest.fixture(params=DRIVERS)
def box(request: pytest.FixtureRequest, carrier: Carrier, image: str,
        tmp_path: Path) -> Iterator[str]:
    """A detached container of each storage driver that runs until removed, with a host
    directory bound at /data."""
    (tmp_path / "bound").mkdir()
    res = carrier("run", "-d", "--name", "box", "--storage-driver", request.param,
                  "-v", f"{tmp_path / 'bound'}:/data", image, "sleep", "1000")
    if res.code != 0 and "fuse" in res.err:
        pytest.skip(f"fuse-overlayfs does not work here: {res.err}")
    assert res.code == 0, res.err
    yield "box"
    carrier("rm", "-f", "box")


def sh(carrier: Carrier, name: str, script: str) -> str:
    """The output of *script* run inside *name* (which must succeed)."""
    res = carrier("exec", name, "sh", "-c", script)
    assert res.code == 0, res.err
    return res.out


def test_copy_in_belongs_to_the_containers_root(carrier: Carrier, box: str, tmp_path: Path) -> None:
    """A file and a directory copied in land where docker cp puts them, owned by the
    container's root; a copy into a bound path reaches the bound host directory."""
    (tmp_path / "note.txt").write_text("hello\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("deep\n")
    assert carrier("cp", str(tmp_path / "note.txt"), f"{box}:/tmp/").code == 0
    assert carrier("cp", str(tmp_path / "note.txt"), f"{box}:/tmp/renamed").code == 0
    res = carrier("cp", str(tree), f"{box}:/srv")
    assert res.code == 0, res.err
    assert carrier("cp", f"{tree}/.", f"{box}:/tmp").code == 0
    out = sh(carrier, box, "cat /tmp/note.txt /tmp/renamed /srv/sub/f /tmp/sub/f; "
                           "stat -c '%u:%g' /tmp/note.txt /srv /srv/sub/f")
    assert out.split("\n") == ["hello", "hello", "deep", "deep", "0:0", "0:0", "0:0", ""]
    assert carrier("cp", str(tmp_path / "note.txt"), f"{box}:/data/in-volume").code == 0
    assert (tmp_path / "bound" / "in-volume").read_text() == "hello\n"


def test_copy_out_belongs_to_the_host_user(carrier: Carrier, box: str, tmp_path: Path) -> None:
    """Files copied out, also ones a non-root uid owns inside, belong to the host user, with
    their contents and directory structure."""
    sh(carrier, box, "mkdir -p /out/sub && echo one > /out/sub/a && echo two > /out/b && "
                     "chown -R 1234:1234 /out && chmod 600 /out/b && ln -s /etc/passwd /out/lnk")
    dest = tmp_path / "got"
    res = carrier("cp", f"{box}:/out", str(dest))
    assert res.code == 0, res.err
    assert (dest / "sub" / "a").read_text() == "one\n"
    assert (dest / "b").read_text() == "two\n"
    assert os.readlink(dest / "lnk") == "/etc/passwd"  # a link, copied as one, never followed
    for path in (dest, dest / "sub", dest / "sub" / "a", dest / "b"):
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid())
    res = carrier("cp", f"{box}:/out/b", str(tmp_path))
    assert res.code == 0, res.err
    assert (tmp_path / "b").read_text() == "two\n"


def test_paths_resolve_inside_the_root(carrier: Carrier, box: str, tmp_path: Path) -> None:
    """`..` and symlinks (absolute and relative) in the container's path resolve inside its
    root: nothing is written on the host, and copying out does not read the host's files."""
    victim = tmp_path / "victim"
    victim.mkdir()
    sh(carrier, box, f"mkdir -p {victim} && ln -s {victim} /abs && ln -s ../../../.. /tmp/up && "
                     f"echo container-side > /tmp/secret")
    (tmp_path / "secret").write_text("host-side\n")
    (tmp_path / "f").write_text("x\n")
    for dest in ("/abs/", "/../../../../../", "/tmp/up/"):
        res = carrier("cp", str(tmp_path / "f"), f"{box}:{dest}")
        assert res.code == 0, res.err
    assert list(victim.iterdir()) == []
    assert not Path("/f").exists()
    assert sh(carrier, box, f"cat {victim}/f /f") == "x\nx\n"
    res = carrier("cp", f"{box}:/tmp/up/tmp/secret", str(tmp_path / "read"))
    assert res.code == 0, res.err
    assert (tmp_path / "read").read_text() == "container-side\n"
    assert sh(carrier, box, f"ls {tmp_path}") == "victim\n"  # only what the container made


def test_bad_input(carrier: Carrier, box: str, tmp_path: Path) -> None:
    """Bad paths are one line and 125, and nothing changes on either side."""
    (tmp_path / "f").write_text("x\n")
    (tmp_path / "d").mkdir()
    before = sh(carrier, box, "ls -R /tmp /etc")
    cases = [
        (str(tmp_path / "f"), str(tmp_path / "g")),  # no container
        (f"{box}:/tmp", f"{box}:/etc"),  # two containers
        (str(tmp_path / "missing"), f"{box}:/tmp"),
        (str(tmp_path / "f"), f"{box}:/no/such/dir/f"),
        (str(tmp_path / "f"), f"{box}:/tmp/newdir/"),
        (str(tmp_path / "d"), f"{box}:/etc/passwd"),  # a directory onto a file
        (f"{box}:/no-such", str(tmp_path / "out")),
        (f"{box}:/etc", str(tmp_path / "f")),  # a directory onto a file
        (f"{box}:/etc/passwd", str(tmp_path / "no" / "such")),
        (str(tmp_path / "f"), "ghost:/tmp"),
    ]
    for src, dest in cases:
        res = carrier("cp", src, dest)
        assert res.code == 125, (src, dest, res)
        assert res.err.startswith("carrier: "), (src, dest, res.err)
        assert res.err.count("\n") == 1, (src, dest, res.err)
    assert sh(carrier, box, "ls -R /tmp /etc") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bound", "carrier-root", "d", "f"]
    assert (tmp_path / "f").read_text() == "x\n"


def test_stopped_container(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """A stopped container of the copy driver is reachable both ways (the overlay driver:
    tests/test_cp_stopped.py)."""
    (tmp_path / "f").write_text("x\n")
    assert carrier("run", "--name", "cp1", "--storage-driver", "copy", image,
                   "sh", "-c", "echo made > /made").code == 0
    assert carrier("cp", "cp1:/made", str(tmp_path / "made")).code == 0
    assert (tmp_path / "made").read_text() == "made\n"
    res = carrier("cp", str(tmp_path / "f"), "cp1:/tmp/f")
    assert res.code == 0, res.err
    assert carrier("cp", "cp1:/tmp/f", str(tmp_path / "back")).code == 0
    assert (tmp_path / "back").read_text() == "x\n"
    carrier("rm", "cp1")


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def _entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
           link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize("members", [
    [_entry("top", tarfile.DIRTYPE), _entry("top/../../escaped", data=b"x")],
    [_entry("top", tarfile.DIRTYPE), _entry("top/lnk", tarfile.SYMTYPE, link="/"),
     _entry("top/lnk/escaped", data=b"x")],
    [_entry("top", tarfile.DIRTYPE), _entry("top/lnk", tarfile.SYMTYPE, link="../.."),
     _entry("top/lnk/escaped", data=b"x")],
    [_entry("top", tarfile.DIRTYPE), _entry("top/hard", tarfile.LNKTYPE, link="../outside"),
     _entry("top/hard", data=b"x")],
], ids=["dotdot", "abs-symlink", "rel-symlink", "hardlink"])
def test_host_side_refuses_an_escaping_archive(tmp_path: Path,
                                               members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    """An archive from the container that would write outside the destination on the host is
    refused, and nothing lands outside it."""
    dest = tmp_path / "a" / "b" / "dest"
    dest.mkdir(parents=True)
    (tmp_path / "a" / "b" / "outside").write_text("keep\n")
    with pytest.raises(CarrierError):
        unpack(_tar(*members), str(dest), untrusted=True)
    assert (tmp_path / "a" / "b" / "outside").read_text() == "keep\n"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["dest", "outside"]
    assert not Path("/escaped").exists()


def test_host_side_keeps_absolute_names_inside(tmp_path: Path) -> None:
    """An absolute name in an archive from the container lands inside the destination on the
    host (its leading slash stripped, as layers are unpacked)."""
    dest = tmp_path / "dest"
    dest.mkdir()
    unpack(_tar(_entry("top", tarfile.DIRTYPE), _entry("/abs", data=b"x")), str(dest),
           untrusted=True)
    assert (dest / "abs").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def test_worker_refuses_a_reused_pid(capsys: pytest.CaptureFixture[str]) -> None:
    """The container's side refuses a /proc/PID/root whose mount namespace is no longer the
    container's (its PID reused by another process), before it chroots or touches anything."""
    from carrier._storage._transfer_worker import main

    assert main([f"/proc/{os.getpid()}/root", "unpack", "/x", "mnt:[1]"]) == 125
    assert capsys.readouterr().err == "carrier: the container stopped while the copy began\n"
