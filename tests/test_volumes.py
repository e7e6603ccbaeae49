"""Storage a container shares with the host: binds, named volumes, tmpfs and a read-only root,
with the real runtime, rootless."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import Carrier
from oci import build_layout

from carrier._images._platform import Platform

RUN = ("run", "--rm", "--network", "none")


def _tree(root: Path) -> list[str]:
    """Every container, name and volume stored under *root* (what "nothing stored" compares)."""
    return sorted(str(p.relative_to(root)) for d in ("containers", "names", "volumes")
                  if (root / d).exists() for p in (root / d).rglob("*"))


def test_bind_read_and_written_inside_is_seen_on_host(carrier: Carrier, image: str,
                                                      tmp_path: Path) -> None:
    """A bound host directory is read and written from inside, the host user's files read as
    root's there, and what the container writes appears on the host."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from host\n")
    res = carrier(*RUN, "-v", f"{shared}:/mnt/shared", image, "sh", "-c",
                  "cat /mnt/shared/in.txt && stat -c %u:%g /mnt/shared/in.txt"
                  " && echo from container > /mnt/shared/out.txt")
    assert res.code == 0, res.err
    assert res.out.split() == ["from", "host", "0:0"]
    assert (shared / "out.txt").read_text() == "from container\n"
    assert (shared / "out.txt").stat().st_uid == os.getuid()


@pytest.mark.parametrize("driver", ["overlay", "fuse-overlayfs", "copy"])
def test_binds_and_volumes_with_every_storage_driver(carrier: Carrier, image: str, tmp_path: Path,
                                                     driver: str) -> None:
    """Binds (read-write and read-only), volumes and a read-only root work whichever driver
    makes the root filesystem."""
    (tmp_path / "rw").mkdir()
    (tmp_path / "ro").mkdir()
    res = carrier(*RUN, "--storage-driver", driver, "--read-only", "-v", f"{tmp_path}/rw:/rw",
                  "-v", f"{tmp_path}/ro:/ro:ro", "-v", "vol:/vol", image, "sh", "-c",
                  "echo a > /rw/a && echo b > /vol/b && touch /tmp/t && ! touch /ro/x 2>/dev/null"
                  " && ! touch /x 2>/dev/null && echo ok")
    assert (res.code, res.out) == (0, "ok\n"), res.err
    assert (tmp_path / "rw" / "a").read_text() == "a\n"
    assert (carrier.root / "volumes" / "vol" / "_data" / "b").read_text() == "b\n"


def test_bind_of_a_file(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """A single host file can be bound onto a path the image does not have."""
    f = tmp_path / "config.ini"
    f.write_text("x=1\n")
    res = carrier(*RUN, "--mount", f"type=bind,src={f},dst=/etc/app/config.ini", image,
                  "cat", "/etc/app/config.ini")
    assert res.code == 0, res.err
    assert res.out == "x=1\n"


def test_read_only_bind_refuses_writes(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """``:ro`` binds read-only: the container reads but cannot write, and the host is unchanged."""
    shared = tmp_path / "ro"
    shared.mkdir()
    (shared / "a").write_text("a\n")
    res = carrier(*RUN, "-v", f"{shared}:/data:ro", image, "sh", "-c",
                  "cat /data/a; echo x > /data/b; echo status=$?")
    assert res.code == 0, res.err
    assert "a\n" in res.out
    assert "status=1" in res.out
    assert "Read-only file system" in res.err
    assert sorted(os.listdir(shared)) == ["a"]


@pytest.mark.parametrize(("option", "says"), [
    (("-v", "{missing}:/data"), "bind source path does not exist"),
    (("-v", "relative/dir:/data"), "a bind source must be an absolute path"),
    (("-v", "{existing}:data"), "it must be an absolute path"),
    (("-v", "{existing}:/data:rx"), "use ro or rw"),
    (("-v", "/data"), "anonymous volumes are not supported"),
    (("-v", "x:/data"), "a volume name [a-zA-Z0-9]"),
    (("--mount", "type=bind,src={missing},dst=/data"), "bind source path does not exist"),
    (("--mount", "type=volume,src={existing},dst=/d"), "type=volume needs a volume name"),
    (("--mount", "type=tmpfs,dst=/t,color=red"), "invalid --mount field 'color=red'"),
    (("--tmpfs", "/t:bogus"), "invalid tmpfs option 'bogus'"),
    (("--tmpfs", "t"), "it must be an absolute path"),
    (("-v", "{existing}:/d"), "duplicate mount destination /d"),
])
def test_bad_mount_is_one_line_and_stores_nothing(carrier: Carrier, image: str, tmp_path: Path,
                                                  option: tuple[str, str], says: str) -> None:
    """A missing or relative source, a relative destination, an unknown option or a duplicate
    destination is refused in one line saying so, with 125, and nothing is stored or created."""
    existing = tmp_path / "exists"
    existing.mkdir()
    missing = tmp_path / "missing"
    value = option[1].format(missing=missing, existing=existing)
    extra = ["--tmpfs", "/d"] if option[1] == "{existing}:/d" else []  # a duplicate destination
    before = _tree(carrier.root)
    res = carrier(*RUN, "--name", "bad", *extra, option[0], value, image, "true")
    assert res.code == 125
    assert res.err.startswith("carrier: "), res.err
    assert res.err.count("\n") == 1, res.err
    assert says in res.err
    assert _tree(carrier.root) == before
    assert not missing.exists()
    assert not os.listdir(existing)


def test_missing_bind_source_message(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """A bind source that does not exist is named in Docker's words."""
    res = carrier(*RUN, "-v", f"{tmp_path}/nope:/data", image, "true")
    assert (res.code, res.err) == (125, f"carrier: bind source path does not exist: {tmp_path}/nope\n")


def test_named_volume_keeps_data_across_containers(carrier: Carrier, image: str) -> None:
    """``-v NAME:/path`` creates the volume, and what one container writes there the next one
    reads after the first is removed."""
    res = carrier(*RUN, "-v", "keep:/data", image, "sh", "-c", "echo kept > /data/f")
    assert res.code == 0, res.err
    assert json.loads(carrier("volume", "ls", "--format", "json").out)[0]["Name"] == "keep"
    res = carrier(*RUN, "-v", "keep:/data", image, "cat", "/data/f")
    assert (res.code, res.out) == (0, "kept\n"), res.err
    mountpoint = Path(json.loads(carrier("volume", "inspect", "keep").out)[0]["Mountpoint"])
    assert mountpoint == carrier.root / "volumes" / "keep" / "_data"
    assert (mountpoint / "f").read_text() == "kept\n"


@pytest.fixture
def layered_image(carrier: Carrier, tmp_path: Path) -> str:
    """The two-layer test image of tests/oci.py: layer 2 deletes /etc/removed and makes /opq
    opaque (hiding /opq/old, adding /opq/new)."""
    build_layout(tmp_path / "oci", platforms=(str(Platform.host()),))
    res = carrier("load", "-i", str(tmp_path / "oci"))
    assert res.code == 0, res.err
    return res.out.split()[-1]  # "Loaded image ID: sha256:..." (the layout names no image)


def test_empty_volume_is_seeded_from_the_image(carrier: Carrier, layered_image: str) -> None:
    """A new volume mounted where the image has content starts with that content as the merged
    layers show it (deleted and hidden files absent); once used it is never seeded again."""
    res = carrier(*RUN, "-v", "etc:/etc", "-v", "opq:/opq", "--entrypoint", "", layered_image,
                  "sh", "-c", "ls -A /etc /opq && cat /opq/new && rm /etc/group")
    assert res.code == 0, res.err
    assert res.out.split() == ["/etc:", "group", "passwd", "/opq:", "new", "new"]
    res = carrier(*RUN, "-v", "etc:/etc", "--entrypoint", "", layered_image, "ls", "-A", "/etc")
    assert res.out.split() == ["passwd"], res.err


def test_volume_commands(carrier: Carrier, image: str) -> None:
    """``volume create/ls/inspect/rm/prune``: rm refuses a volume a container uses unless -f
    (which removes the container), prune removes only unused volumes."""
    assert carrier("volume", "create", "--label", "a=b", "made").code == 0
    again = carrier("volume", "create", "made")
    assert again.code == 125
    assert again.err == "carrier: volume with name made already exists\n"
    assert json.loads(carrier("volume", "inspect", "made").out)[0]["Labels"] == {"a": "b"}
    res = carrier("run", "--name", "user", "--network", "none", "-v", "used:/data", image, "true")
    assert res.code == 0, res.err
    listed = carrier("volume", "ls").out.splitlines()
    assert listed[0].split() == ["DRIVER", "VOLUME", "NAME", "CREATED"]
    assert [line.split()[:2] for line in listed[1:]] == [["local", "made"], ["local", "used"]]
    refused = carrier("volume", "rm", "used")
    assert refused.code == 125
    assert refused.err == ("carrier: volume used is being used by the following container(s): "
                           "user (remove them first or use -f)\n")
    pruned = carrier("volume", "prune")
    assert (pruned.code, pruned.out) == (0, "made\n"), pruned.err
    missing = carrier("volume", "inspect", "made")
    assert (missing.code, missing.err) == (125, "carrier: no such volume: made\n")
    forced = carrier("volume", "rm", "-f", "used")
    assert (forced.code, forced.out) == (0, "used\n"), forced.err
    assert carrier("ps", "-a").out.count("\n") <= 1
    assert json.loads(carrier("volume", "ls", "--format", "json").out) == []


def test_volume_rm_removes_files_of_other_uids(carrier: Carrier, image: str) -> None:
    """Files written into a volume as uid 1000 inside (a subordinate id on the host, in a
    directory the host user cannot write) are removed by ``volume rm``."""
    res = carrier(*RUN, "-v", "ids:/data", image, "sh", "-c",
                  "mkdir /data/d && chown 1000:1000 /data/d && chmod 700 /data/d")
    assert res.code == 0, res.err
    res = carrier(*RUN, "-u", "1000", "-v", "ids:/data", image, "sh", "-c",
                  "echo x > /data/d/f && mkdir /data/d/sub && echo y > /data/d/sub/g")
    assert res.code == 0, res.err
    data = carrier.root / "volumes" / "ids" / "_data"
    assert (data / "d").stat().st_uid != os.getuid()
    res = carrier("volume", "rm", "ids")
    assert (res.code, res.out) == (0, "ids\n"), res.err
    assert not (carrier.root / "volumes" / "ids").exists()
    assert os.listdir(carrier.root / "volumes") == []


def test_library_passes_volumes(carrier: Carrier, image: str, tmp_path: Path) -> None:
    """``carrier.run(..., volumes=[...], read_only=True)`` takes the CLI's strings."""
    import anyio

    import carrier as lib

    async def main() -> int:
        async with lib.run(image, ["sh", "-c", "echo lib > /out/f"], root=carrier.root,
                           network="none", volumes=[f"{tmp_path}:/out"], read_only=True) as c:
            return (await c.wait()).exit_code

    assert anyio.run(main) == 0
    assert (tmp_path / "f").read_text() == "lib\n"


def test_records_without_mount_fields_stay_readable() -> None:
    """A record written before these options existed reads as having no extra mounts."""
    from carrier._state._records import Record

    old = {"version": 1, "id": "a" * 64, "name": "old", "spec": {
        "image": "busybox", "image_id": "sha256:" + "b" * 64, "args": ["true"], "env": [],
        "cwd": "/", "user": "0", "hostname": "old"}}
    spec = Record.from_json(old).spec
    assert (spec.volumes, spec.mounts, spec.tmpfs, spec.read_only) == ([], [], [], False)


def test_tmpfs(carrier: Carrier, image: str) -> None:
    """``--tmpfs`` mounts a fresh tmpfs (noexec by default, options taken), which the next
    container does not see."""
    res = carrier(*RUN, "--tmpfs", "/scratch:size=1m,mode=1777", image, "sh", "-c",
                  "grep ' /scratch ' /proc/mounts && echo hi > /scratch/f && cat /scratch/f")
    assert res.code == 0, res.err
    line, content = res.out.splitlines()
    assert line.split()[2] == "tmpfs"
    assert "noexec" in line
    assert "size=1024k" in line
    assert content == "hi"


def test_read_only_root(carrier: Carrier, image: str) -> None:
    """``--read-only`` refuses writes to the root filesystem, while /tmp, /run, /var/tmp (as with
    Podman's --read-only-tmpfs) and a volume stay writable."""
    res = carrier(*RUN, "--read-only", "-v", "rw:/data", image, "sh", "-c",
                  "touch /root/x; echo root=$?; for d in /tmp /run /var/tmp /data; do"
                  " touch $d/x && echo $d=ok; done")
    assert res.code == 0, res.err
    assert res.out.split() == ["root=1", "/tmp=ok", "/run=ok", "/var/tmp=ok", "/data=ok"]
    assert "Read-only file system" in res.err
    res = carrier(*RUN, "--read-only", "--read-only-tmpfs=false", image, "sh", "-c",
                  "touch /tmp/x; echo tmp=$?")
    assert res.out.split() == ["tmp=1"], res.err


def test_volume_rm_force_stops_a_running_user(carrier: Carrier, image: str) -> None:
    """A volume a running container uses is refused by ``volume rm``; ``-f`` stops and removes
    that container, then the volume."""
    res = carrier("run", "-d", "--name", "busy", "--network", "none", "-v", "live:/data", image,
                  "sleep", "1000")
    assert res.code == 0, res.err
    refused = carrier("volume", "rm", "live")
    assert refused.code == 125
    assert "used by the following container(s): busy" in refused.err
    assert carrier.record("busy")["status"] == "running"
    forced = carrier("volume", "rm", "-f", "live")
    assert (forced.code, forced.out) == (0, "live\n"), forced.err
    assert carrier("info", "busy").code == 125
    assert not (carrier.root / "volumes" / "live").exists()


@pytest.mark.parametrize("network", ["pasta", "slirp4netns"])
def test_read_only_root_with_a_network(carrier: Carrier, image: str, network: str) -> None:
    """With a network helper, a read-only root still has the resolv.conf and hosts that Carrier
    wrote for it, and stays read-only."""
    res = carrier("run", "--rm", "--network", network, "--read-only", image, "sh", "-c",
                  "test -s /etc/resolv.conf && grep -q localhost /etc/hosts"
                  " && ! touch /etc/x 2>/dev/null && echo ok")
    assert (res.code, res.out) == (0, "ok\n"), res.err


def test_two_first_mounts_at_once_share_one_seeded_volume(carrier: Carrier,
                                                          layered_image: str) -> None:
    """Two containers that create and seed the same new volume at once both see it seeded
    exactly once, and no staging directory is left."""
    procs = [carrier.popen(*RUN, "-v", "race:/opq", "--entrypoint", "", layered_image,
                           "ls", "-A", "/opq", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [out.split() for out, _ in outs] == [["new"], ["new"]]
    assert os.listdir(carrier.root / "volumes") == ["race"]
    assert sorted(os.listdir(carrier.root / "volumes" / "race")) == ["_data", "volume.json"]
