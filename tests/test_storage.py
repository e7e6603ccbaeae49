"""Per-container storage, for real, with each driver: layers applied with their whiteouts, a
container's writes its own, the shared layers untouched; image removal and pruning."""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from conftest import Carrier, still_alive, user_processes
from helpers import alive, wait_event
from oci import HELLO, build_layout

from carrier._images._layers import Layers
from carrier._util._root import Root

DRIVERS = ["overlay", "fuse-overlayfs", "copy"]


@pytest.fixture
def layered(carrier: Carrier, tmp_path: Path) -> str:
    """A two-layer image (a whiteout and an opaque directory in the top layer), loaded."""
    build_layout(tmp_path / "layout", tag="test/layers:1")
    res = carrier("load", "-i", str(tmp_path / "layout"))
    assert res.code == 0, res.err
    assert "Loaded image: test/layers:1" in res.out
    return "test/layers:1"


def _tree_digest(path: Path) -> str:
    """A digest of every name, type, mode and content under *path*."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, path)} {st.st_mode:o}\n".encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


@pytest.mark.parametrize("driver", DRIVERS)
def test_layers_whiteouts_and_image_config(carrier: Carrier, layered: str, driver: str) -> None:
    """The top layer's file is there, its whiteout hides a file, its opaque directory hides the
    lower one's contents; Entrypoint, Cmd, Env and WorkingDir come from the image."""
    res = carrier("run", "--rm", "--storage-driver", driver, layered)
    assert (res.code, res.out) == (0, HELLO), res.err
    script = "test ! -e /etc/removed && ls /opq && pwd && echo $FROM_IMAGE"
    res = carrier("run", "--rm", "--storage-driver", driver, layered, script)
    assert (res.code, res.out.split()) == (0, ["new", "/opq", "yes"]), res.err
    res = carrier("run", "--rm", "--storage-driver", driver, "--entrypoint", "/bin/echo", layered, "x")
    assert (res.code, res.out) == (0, "x\n"), res.err


@pytest.mark.parametrize("driver", DRIVERS)
def test_writes_stay_in_their_container(carrier: Carrier, layered: str, driver: str) -> None:
    """A file written (and one deleted) in container A: absent (present) in container B from
    the same image, and the shared layers are unchanged."""
    layers = carrier.root / "layers" / "sha256"
    before = _tree_digest(layers)
    a = carrier("run", "--name", "a", "--storage-driver", driver, layered,
                "echo mine > /opq/a-only && rm /hello.txt && echo written")
    assert (a.code, a.out) == (0, "written\n"), a.err
    b = carrier("run", "--rm", "--storage-driver", driver, layered,
                "test ! -e /opq/a-only && cat /hello.txt")
    assert (b.code, b.out) == (0, HELLO), b.err
    assert _tree_digest(layers) == before
    record = carrier.record("a")
    assert record["spec"]["storage_driver"] == driver  # type: ignore[index]
    cdir = Path(str(record["Dir"]))
    own = cdir / ("rootfs" if driver == "copy" else "upper")
    assert (own / "opq" / "a-only").read_text() == "mine\n"
    assert carrier("rm", "a").code == 0


@pytest.mark.parametrize("driver", DRIVERS)
def test_exec_and_restart_see_the_same_filesystem(carrier: Carrier, layered: str, driver: str) -> None:
    """exec reaches the container's root; a restarted container keeps what it wrote."""
    res = carrier("run", "-d", "--name", "keep", "--storage-driver", driver, layered, "sleep 60")
    assert res.code == 0, res.err
    res = carrier("exec", "keep", "sh", "-c", "echo kept > /opq/mark && cat /hello.txt /etc/hostname")
    assert res.code == 0, res.err
    assert res.out.splitlines() == [HELLO.strip(), "keep"]
    assert carrier("stop", "-t", "0", "keep").code == 0
    res = carrier("run", "--rm", "--storage-driver", driver, layered, "test ! -e /opq/mark")
    assert res.code == 0, "another container saw the mark"
    assert carrier("rm", "keep").code == 0


def test_fuse_overlayfs_death_ends_the_group(carrier: Carrier, layered: str) -> None:
    """fuse-overlayfs is a member: kill -9 it and the container group is cancelled and cleaned."""
    res = carrier("run", "-d", "--name", "f", "--storage-driver", "fuse-overlayfs", layered, "sleep 60")
    assert res.code == 0, res.err
    record = carrier.record("f")
    holder = int(record["holder_pid"])  # type: ignore[arg-type]
    fuse = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_fuse_for(int(p), str(record["Dir"]))]
    assert len(fuse) == 1
    os.kill(fuse[0], signal.SIGKILL)
    wait_event(carrier, "cleaned", 1)
    final = carrier.record("f")
    assert final["status"] == "exited"
    assert "storage-exited" in str(final["reason"])
    assert not alive(holder)
    assert carrier("rm", "f").code == 0


def _is_fuse_for(pid: int, cdir: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and cmd[0].endswith(b"fuse-overlayfs") and any(cdir.encode() in c for c in cmd)


def test_info_shows_the_storage_driver(carrier: Carrier) -> None:
    """``carrier info`` with no container reports the automatic choice and why others are out."""
    res = carrier("info")
    assert res.code == 0, res.err
    assert "StorageDriver: overlay" in res.out  # the kernel here allows overlay in a userns
    assert "fuse-overlayfs: usable" in res.out


def test_rmi_refuses_an_image_in_use_and_prune_frees_it(carrier: Carrier, layered: str) -> None:
    """rmi of an image a container uses fails (stored data unchanged); -f only untags it; prune
    then removes the stopped container, the dangling image and its layers, and says how much."""
    assert carrier("run", "--name", "user", layered).code == 0
    res = carrier("rmi", layered)
    assert res.code == 125
    assert "container user uses it" in res.err
    assert "test/layers " in carrier("images").out
    res = carrier("rmi", "-f", layered)
    assert res.code == 0, res.err
    assert "Untagged: test/layers:1" in res.out
    assert "test/layers " not in carrier("images").out
    layers = carrier.root / "layers" / "sha256"
    assert len([p for p in layers.iterdir() if not p.name.startswith(".")]) == 2
    res = carrier("system", "prune", "-f")
    assert res.code == 0, res.err
    assert "Deleted container: user" in res.out
    assert "Deleted image: sha256:" in res.out
    reclaimed = res.out.splitlines()[-1]
    assert reclaimed.startswith("Total reclaimed space: ")
    assert "MB" in reclaimed
    assert [p for p in layers.iterdir() if not p.name.startswith(".")] == []
    assert "<none>" not in carrier("images").out
    (layers / ("0" * 64)).mkdir()  # a layer directory never completed (no size file)
    assert carrier("system", "prune", "-f").code == 0
    assert not (layers / ("0" * 64)).exists()


def test_rmi_then_run_again(carrier: Carrier, image: str) -> None:
    """rmi of an unused image deletes it and its layers; running it again is a clear error."""
    res = carrier("rmi", image)
    assert res.code == 0, res.err
    assert "Deleted: sha256:" in res.out
    assert not any(p for p in (carrier.root / "layers" / "sha256").iterdir() if not p.name.startswith("."))
    res = carrier("run", "--rm", "--pull", "never", image, "true")
    assert res.code == 125
    assert "no such image" in res.err


def _hostile(tmp_path: Path, name: str, *entries: tarfile.TarInfo) -> Path:
    path = tmp_path / f"{name}.tar"
    with tarfile.open(path, "w") as tar:
        for info in entries:
            data = b"owned\n" if info.isreg() else None
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


@pytest.mark.parametrize("case", ["dotdot", "symlink-write", "hardlink"])
def test_hostile_layers_are_refused(carrier: Carrier, tmp_path: Path, case: str) -> None:
    """Escapes are refused with the layer and the entry named; the host and the store are
    untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("s")
    entries = {
        "dotdot": [_entry("../outside/escape")],
        "symlink-write": [_entry("etc", tarfile.SYMTYPE, str(outside)), _entry("etc/passwd")],
        "hardlink": [_entry("link", tarfile.LNKTYPE, str(secret))],
    }[case]
    archive = _hostile(tmp_path, case, *entries)
    images_before = carrier("images").out
    res = carrier("import", str(archive), "hostile")
    assert res.code == 125
    assert len(res.err.strip().splitlines()) == 1, res.err
    assert f"layer {case}.tar: refused entry" in res.err
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert secret.read_text() == "s"
    assert carrier("images").out == images_before
    layers = carrier.root / "layers" / "sha256"
    assert [p for p in layers.iterdir()] == []  # not even a staging directory is left


def test_hostile_entries_are_neutralised(carrier: Carrier, tmp_path: Path) -> None:
    """An absolute name lands inside the layer, setuid is cleared, and a device node (which a
    rootless user cannot make) is skipped with a warning naming it."""
    absolute = _entry("/carrier-abs-test")
    setuid = _entry("bin/su")
    setuid.mode = 0o4755
    device = _entry("dev/sda", tarfile.BLKTYPE)
    device.devmajor, device.devminor = 8, 0
    archive = _hostile(tmp_path, "odd", absolute, setuid, device)
    res = carrier("import", str(archive), "odd")
    assert res.code == 0, res.err
    assert "dev/sda" in res.err
    assert "layer.device_skipped" in res.err
    assert not Path("/carrier-abs-test").exists()
    (layer,) = [p for p in (carrier.root / "layers" / "sha256").iterdir()]
    assert (layer / "diff" / "carrier-abs-test").read_text() == "owned\n"
    assert (layer / "diff" / "bin" / "su").stat().st_mode & 0o7777 == 0o755
    assert not (layer / "diff" / "dev" / "sda").exists()


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_rm_removes_files_the_container_gave_to_other_users(carrier: Carrier, image: str,
                                                            driver: str) -> None:
    """Files a container chowned to its uid 1000 (a subordinate id on the host, which the user
    cannot delete directly) are removed by ``rm``, from inside a user namespace."""
    res = carrier("run", "--name", "owner", "--storage-driver", driver, image, "sh", "-c",
                  "mkdir /d && touch /d/f && chown -R 1000:1000 /d && chmod 700 /d")
    assert res.code == 0, res.err
    cdir = Path(str(carrier.record("owner")["Dir"]))
    assert (cdir / ("upper" if driver == "overlay" else "rootfs") / "d").stat().st_uid != os.getuid()
    res = carrier("rm", "owner")
    assert res.code == 0, res.err
    assert not cdir.exists()


def test_prune_waits_for_a_pull_in_progress(carrier: Carrier, rootfs_tar: Path) -> None:
    """A layer a pull has unpacked but not yet tagged is not pruned: prune waits for the pull's
    shared lock (seen blocked in /proc/locks), then removes what is still unused."""
    root = Root.open(carrier.root)
    gc = os.open(root.gc_lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(gc, fcntl.LOCK_SH)  # what a pull holds from start to tag
    try:
        diff_id = Layers(root).add(rootfs_tar, label="in-flight")
        prune = subprocess.Popen(carrier.argv("system", "prune", "-f"), env=carrier.env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        inode = os.stat(root.gc_lock).st_ino
        deadline = time.monotonic() + 30
        while not any("->" in line and f":{inode} " in line
                      for line in Path("/proc/locks").read_text().splitlines()):
            assert prune.poll() is None, prune.communicate()
            assert time.monotonic() < deadline, "prune never waited on the lock"
            time.sleep(0.01)  # bounded poll: the kernel offers no event for a blocked flock
        assert Layers(root).has(diff_id)
    finally:
        os.close(gc)
    out, err = prune.communicate(timeout=30)
    assert prune.returncode == 0, err
    assert "Total reclaimed space" in out
    assert not Layers(root).has(diff_id)  # still untagged after the "pull": now it goes


def test_a_root_path_with_overlay_separators_falls_back_to_copy(tmp_path: Path, rootfs_tar: Path) -> None:
    """overlay's mount options are separated by ',' and ':': a Carrier root whose path holds
    one uses the copy driver, and says why."""
    before = set(user_processes())
    cli = Carrier(tmp_path / "odd,root")
    assert cli("import", str(rootfs_tar), "busybox").code == 0
    res = cli("info")
    assert "StorageDriver: copy" in res.out
    assert "contains ',' or ':'" in res.out
    res = cli("run", "--rm", "busybox", "echo", "ok")
    assert (res.code, res.out) == (0, "ok\n"), res.err
    # The exit comes before the helper's stop (docs/performance.md): gone soon after.
    assert not still_alive({p: c for p, c in user_processes().items() if p not in before})
    assert not any((cli.root / "runtime").iterdir())
