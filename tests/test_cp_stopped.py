"""``carrier cp`` to and from a stopped container of the overlay driver, as Podman allows: its
root is mounted for the copy (the image's layers under its upper directory) in a user and mount
namespace of the worker's own. Rootless, real overlay."""

from __future__ import annotations

from pathlib import Path

from conftest import Carrier


def _mounts_of_rootfs(carrier: Carrier) -> list[str]:
    """Mounts on any container's rootfs directory that this process can see."""
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(carrier.root) in line]


def test_stopped_overlay_both_ways(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """A file copied into a created (never started) overlay container is there when it runs,
    and what it wrote is copied out once it has exited; no mount is left behind."""
    (tmp_path / "g").write_text("hello\n")
    assert carrier("create", "--name", "s", "--storage-driver", "overlay", "--network", "none",
                   image, "sh", "-c", "cat /g; echo made > /f; rm /etc/hostname").code == 0
    res = carrier("cp", str(tmp_path / "g"), "s:/g")
    assert res.code == 0, res.err
    res = carrier("start", "-a", "s")
    assert (res.code, res.out) == (0, "hello\n"), res
    assert carrier.record("s")["status"] == "exited"
    res = carrier("cp", "s:/f", str(tmp_path / "f"))
    assert res.code == 0, res.err
    assert (tmp_path / "f").read_text() == "made\n"
    res = carrier("cp", "s:/bin/busybox", str(tmp_path / "bb"))  # from a lower layer
    assert res.code == 0, res.err
    assert (tmp_path / "bb").stat().st_size > 0
    res = carrier("cp", "s:/etc/hostname", str(tmp_path / "h"))  # removed: a whiteout
    assert res.code == 125, res
    assert _mounts_of_rootfs(carrier) == []
    assert carrier("start", "-a", "s").out == "hello\n"  # its root still works for a run
    assert carrier("rm", "s").code == 0


def test_stopped_overlay_bad_input(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """A missing path in a stopped overlay container: one line, 125, nothing written."""
    assert carrier("create", "--name", "b", "--storage-driver", "overlay", image, "true").code == 0
    res = carrier("cp", "b:/nope", str(tmp_path / "x"))
    assert res.code == 125, res
    assert len(res.err.splitlines()) == 1, res
    assert res.err.startswith("carrier: "), res
    assert not (tmp_path / "x").exists()
    assert carrier("rm", "b").code == 0


def test_stopped_files_of_another_user(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """Files a non-root user of a stopped container owns (a 0700 directory of uid 999) are
    copied out and into as from the running container: the copy has the run's id maps, not
    just the caller's own id (for which uid 999 would be the overflow id, and EACCES)."""
    assert carrier("run", "--name", "u", "--storage-driver", "overlay", "--network", "none",
                   image, "sh", "-c", "mkdir -m 0700 /data && echo mine > /data/f && "
                   "chown -R 999:999 /data").code == 0
    res = carrier("cp", "u:/data/f", str(tmp_path / "f"))
    assert res.code == 0, res.err
    assert (tmp_path / "f").read_text() == "mine\n"
    (tmp_path / "g").write_text("in\n")
    res = carrier("cp", str(tmp_path / "g"), "u:/data/g")
    assert res.code == 0, res.err
    res = carrier("cp", "u:/data/g", str(tmp_path / "back"))
    assert res.code == 0, res.err
    assert (tmp_path / "back").read_text() == "in\n"
    assert _mounts_of_rootfs(carrier) == []
    assert carrier("rm", "u").code == 0
