"""State on disk that survives: other network namespaces, other Carrier versions, damage,
half-finished creations, crashed trees, full disks and other users' files."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from conftest import Carrier
from helpers import container_pid, helper_pid, own_supervisor, wait_pidfd, wait_unsupervised
from test_network import HELPERS

import carrier

SUPERVISORS = Path(__file__).resolve().parent.parent / "supervisors"


def _other_netns(carrier: Carrier, *args: str) -> subprocess.CompletedProcess[str]:
    """``carrier ARGS`` as this same user, from a network namespace of its own (a user
    namespace that maps this uid and gid to themselves, so Carrier sees the same user)."""
    argv = ["unshare", "--user", f"--map-user={os.getuid()}", f"--map-group={os.getgid()}",
            "--net", "--", *carrier.argv(*args)]
    return subprocess.run(argv, env=carrier.env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def _state(carrier: Carrier, name: str) -> Path:
    return Path(str(carrier.record(name)["Dir"])) / "state.json"


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "warning" in line]


class TestOtherNetns:
    @pytest.mark.parametrize("helper", HELPERS)
    def test_stop_and_rm_from_another_netns(self, carrier: Carrier, image: str,
                                            helper: str) -> None:
        """stop and rm -f reach the supervisor from another network namespace of the same
        user: the container really stops, and rm leaves no process behind."""
        ns = subprocess.run(["unshare", "--user", f"--map-user={os.getuid()}",
                             f"--map-group={os.getgid()}", "--net", "readlink", "/proc/self/ns/net"],
                            capture_output=True, text=True, check=True).stdout
        assert ns.strip() != os.readlink("/proc/self/ns/net"), "the caller's netns differs"
        for name in ("a", "b"):
            res = carrier("run", "-d", "--name", name, "--network", helper, "--stop-timeout", "0.5",
                          image, "sleep", "1000")
            assert res.code == 0, res.err
        rec_a = carrier.record("a")
        res = _other_netns(carrier, "stop", "a")
        assert (res.returncode, res.stdout) == (0, "a\n"), res.stderr
        wait_unsupervised(rec_a)
        assert carrier.record("a")["status"] == "exited"
        rec_b = carrier.record("b")
        processes = [int(rec_b["holder_pid"]),  # type: ignore[arg-type]
                     container_pid(carrier, "b"), helper_pid(carrier, "b")]
        res = _other_netns(carrier, "rm", "-f", "b")
        assert (res.returncode, res.stdout) == (0, "b\n"), res.stderr
        for pid in processes:
            wait_pidfd(pid)
        wait_unsupervised(rec_b)
        assert carrier("rm", "a").code == 0
        assert carrier("ps", "-a").out.count("\n") == 1

    def test_a_stop_request_waits_for_a_supervisor_not_listening_yet(self, tmp_path: Path) -> None:
        """A stop request left before the supervisor listened is taken as soon as it listens."""
        from carrier._supervision._control import STOP_REQUEST, serve_control

        (tmp_path / STOP_REQUEST).write_text(json.dumps({"stop": 3}))
        asked: list[float | None] = []

        async def main() -> None:
            async with anyio.create_task_group() as tg:

                def on_stop(timeout: float | None) -> None:
                    asked.append(timeout)
                    tg.cancel_scope.cancel()

                tg.start_soon(serve_control, "x" * 64, on_stop, tmp_path)

        anyio.run(main)
        assert asked == [3]
        assert not (tmp_path / STOP_REQUEST).exists()
        assert not (tmp_path / "control.sock").exists()


class TestVersions:
    def _exited(self, carrier: Carrier, image: str, name: str) -> Path:
        res = carrier("run", "--name", name, image, "true")
        assert res.code == 0, res.err
        return _state(carrier, name)

    def test_record_of_an_older_carrier(self, carrier: Carrier, image: str) -> None:
        """A record with no version and fields missing (an older Carrier's) is read with the
        fields' defaults: ps, info, run and rm work."""
        path = self._exited(carrier, image, "old")
        data = json.loads(path.read_text())
        for key in ("version", "health", "restarts", "network"):
            data.pop(key, None)
        for key in ("labels", "mtu", "health_cmd", "health_on_failure", "restart_period"):
            data["spec"].pop(key, None)
        path.write_text(json.dumps(data))
        for args in (["ps", "-a"], ["info", "old"], ["run", "--rm", image, "true"]):
            res = carrier(*args)
            assert (res.code, res.err) == (0, ""), args
        assert "old" in carrier("ps", "-a").out
        assert carrier.record("old")["restarts"] == 0
        assert carrier("rm", "old").code == 0

    def test_record_of_a_newer_carrier_keeps_its_fields(self, carrier: Carrier, image: str) -> None:
        """A record with a higher version and unknown fields (a newer Carrier's) is read, and
        the unknown fields survive when this version writes the record (reconcile)."""
        res = carrier("run", "-d", "--name", "new", "--network", "none", image, "sleep", "1000")
        assert res.code == 0, res.err
        path = _state(carrier, "new")
        rec = carrier.record("new")
        supervisor = int(rec["supervisor_pid"])  # type: ignore[arg-type]
        os.kill(supervisor, signal.SIGKILL)
        wait_pidfd(supervisor)
        data = json.loads(path.read_text())
        data.update(version=99, future={"a": [1, 2]})
        data["spec"]["future_option"] = "x"
        path.write_text(json.dumps(data))
        res = carrier("ps", "-a")  # reconciles, and so rewrites the record
        assert res.code == 0, res.err
        assert "Exited (137)" in res.out
        data = json.loads(path.read_text())
        assert (data["version"], data["future"], data["spec"]["future_option"]) == (99, {"a": [1, 2]}, "x")
        assert data["status"] == "exited"
        for args in (["info", "new"], ["run", "--rm", image, "true"], ["rm", "new"]):
            res = carrier(*args)
            assert res.code == 0, (args, res.err)

    def test_library_reads_records_of_other_versions(self, cli: Carrier, image: str) -> None:
        """carrier.run works beside records of an older and a newer Carrier."""
        old = self._exited(cli, image, "old")
        data = json.loads(old.read_text())
        data.pop("version")
        old.write_text(json.dumps(data))
        new = self._exited(cli, image, "new")
        data = json.loads(new.read_text())
        data.update(version=99, future=True)
        new.write_text(json.dumps(data))

        async def main() -> int:
            async with carrier.run(image, ["true"], root=cli.root) as c:
                return (await c.wait()).exit_code

        assert anyio.run(main) == 0
        assert cli("rm", "old", "new").code == 0

    def test_images_json_of_older_and_newer_carriers(self, carrier: Carrier, image: str,
                                                     rootfs_tar: Path) -> None:
        """images.json without a version (the bare name map) and with a higher version and
        unknown keys is read; a write keeps what this version does not know."""
        index = carrier.root / "images.json"
        data = json.loads(index.read_text())
        assert data["version"] == 1
        index.write_text(json.dumps(data["images"]))  # what an older Carrier wrote
        res = carrier("images")
        assert (res.code, res.err) == (0, "")
        assert "busybox" in res.out
        index.write_text(json.dumps({"version": 7, "future": [1], "images": {
            **data["images"], "docker.io/library/odd:1": {"digest": "sha256:" + "0" * 64}}}))
        res = carrier("images")
        assert (res.code, res.err) == (0, "")
        assert "busybox" in res.out
        res = carrier("import", str(rootfs_tar), "other")
        assert res.code == 0, res.err
        data = json.loads(index.read_text())
        assert (data["version"], data["future"]) == (7, [1])
        assert data["images"]["docker.io/library/odd:1"] == {"digest": "sha256:" + "0" * 64}
        assert "docker.io/library/other:latest" in data["images"]


DAMAGES = {
    "garbage": lambda data: b"\x00{not json",
    "empty": lambda data: b"",
    "wrong-types": lambda data: json.dumps(
        {**data, "status": 5, "spec": {**data["spec"], "args": "sleep"}}).encode(),
}


class TestDamage:
    @pytest.mark.parametrize("damage", list(DAMAGES))
    def test_damaged_record(self, carrier: Carrier, image: str, damage: str) -> None:
        """A damaged state.json: one warning line naming it, the other containers work, the
        damaged one's processes are reaped, its file is left as it is, and rm -f removes it."""
        for name in ("good", "bad"):  # bad's supervisor alone is killed: a process of its own
            with own_supervisor(carrier, name == "bad"):
                res = carrier("run", "-d", "--name", name, "--network", "slirp4netns", image,
                              "sleep", "1000")
            assert res.code == 0, res.err
        rec = carrier.record("bad")
        path = Path(str(rec["Dir"])) / "state.json"
        processes = [int(rec["supervisor_pid"]), int(rec["holder_pid"]),  # type: ignore[arg-type]
                     container_pid(carrier, "bad"), helper_pid(carrier, "bad")]
        os.kill(processes[0], signal.SIGKILL)
        wait_pidfd(processes[0])
        damaged = DAMAGES[damage](json.loads(path.read_text()))
        path.write_bytes(damaged)
        res = carrier("ps", "-a")
        assert res.code == 0, res.err
        assert len(_warnings(res.err)) == 1, res.err
        assert str(path) in res.err
        assert "Damaged" in res.out
        assert "bad" in res.out
        assert "Up" in next(line for line in res.out.splitlines() if line.endswith("good"))
        for pid in processes:
            wait_pidfd(pid)
        assert path.read_bytes() == damaged, "nothing is overwritten"
        res = carrier("info", "bad")  # the warning, then the error naming the file
        assert res.code == 125
        assert res.err.splitlines()[-1].startswith("carrier: ")
        assert str(path) in res.err
        assert carrier("run", "--rm", "--network", "none", image, "true").code == 0
        res = carrier("rm", "-f", "bad")
        assert (res.code, res.out) == (0, "bad\n"), res.err
        assert not path.parent.exists()
        res = carrier("run", "-d", "--name", "bad", "--network", "none", image, "sleep", "1000")
        assert res.code == 0, res.err  # the name is free again
        assert carrier("rm", "-f", "good", "bad").code == 0

    def test_damaged_images_json(self, carrier: Carrier, image: str, rootfs_tar: Path) -> None:
        """A damaged images.json: one warning line naming it; images, run (by id) and import
        work; the damaged file is moved aside, never overwritten."""
        index = carrier.root / "images.json"
        data = json.loads(index.read_text())
        ident = data.get("images", data)["docker.io/library/busybox:latest"]
        index.write_bytes(b"{garbage")
        res = carrier("images")
        assert res.code == 0, res.err
        assert len(_warnings(res.err)) == 1, res.err
        assert str(index) in res.err
        assert ident.split(":")[1][:12] in res.out
        res = carrier("run", "--rm", "--pull", "never", "--network", "none", ident, "true")
        assert res.code == 0, res.err
        res = carrier("import", str(rootfs_tar), "busybox")
        assert res.code == 0, res.err
        assert (carrier.root / "images.json.damaged").read_bytes() == b"{garbage"
        res = carrier("images")
        assert (res.code, res.err) == (0, "")
        assert "busybox" in res.out


class TestHalfCreated:
    def _half_created(self, carrier: Carrier, name: str) -> Path:
        """What a SIGKILL between reserving the name and writing the first record leaves."""
        (carrier.root / "names").mkdir(parents=True, exist_ok=True)
        cid = os.urandom(32).hex()
        cdir = carrier.root / "containers" / cid
        cdir.mkdir(parents=True, mode=0o700)
        (cdir / "supervisor.lock").touch()
        (cdir / ".state.json.abc123").write_text("{")
        os.symlink(cid, carrier.root / "names" / name)
        return cdir

    def test_a_half_created_container_is_repaired(self, carrier: Carrier, image: str) -> None:
        """A creation killed half-way leaves a name that the next command releases."""
        cdir = self._half_created(carrier, "lost")
        assert carrier("ps", "-a").code == 0
        assert not cdir.exists()
        assert not (carrier.root / "names" / "lost").is_symlink()
        res = carrier("run", "--rm", "--name", "lost", "--network", "none", image, "true")
        assert res.code == 0, res.err

    def test_a_creation_in_progress_is_left_alone(self, carrier: Carrier, image: str) -> None:
        """While some process is creating a container, no half-created name is taken."""
        cdir = self._half_created(carrier, "busy")
        fd = os.open(carrier.root / "names", os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # a creator at work
            assert carrier("ps", "-a").code == 0
            assert cdir.exists()
            assert (carrier.root / "names" / "busy").is_symlink()
        finally:
            os.close(fd)
        assert carrier("ps", "-a").code == 0
        assert not cdir.exists()

    def test_rm_f_removes_a_container_that_lost_its_record(self, carrier: Carrier,
                                                          image: str) -> None:
        """A container whose state.json is gone (after it ran) is listed and rm -f removes it."""
        res = carrier("run", "--name", "gone", "--network", "none", image, "true")
        assert res.code == 0, res.err
        path = _state(carrier, "gone")
        path.unlink()
        res = carrier("ps", "-a")
        assert res.code == 0
        assert "gone" in res.out
        assert str(path) in res.err
        assert carrier("rm", "-f", "gone").code == 0
        assert not path.parent.exists()
        assert not (carrier.root / "names" / "gone").is_symlink()


class TestTrees:
    def test_up_after_down(self, carrier: Carrier, image: str) -> None:
        """up -d, down, up -d: the tree's containers are recreated and run again."""
        tree = str(SUPERVISORS / "pair.toml")
        for _ in range(2):
            res = carrier("up", "-d", tree)
            assert res.code == 0, res.err
            assert carrier.record("pair-left")["status"] == "running"
            res = carrier("down", tree)
            assert res.code == 0, res.err
        assert carrier("rm", "pair-left", "pair-right").code == 0

    def test_up_after_a_crash(self, carrier: Carrier, image: str) -> None:
        """After the tree's supervisor is killed, up -d brings the tree up again."""
        tree = str(SUPERVISORS / "pair.toml")
        assert carrier("up", "-d", tree).code == 0
        pid = json.loads((carrier.root / "trees" / "pair.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_pidfd(pid)
        res = carrier("up", "-d", tree)
        assert res.code == 0, res.err
        assert carrier.record("pair-right")["status"] == "running"
        assert carrier("down", tree).code == 0
        assert carrier("rm", "pair-left", "pair-right").code == 0

    def test_a_name_the_tree_did_not_create_is_a_conflict(self, carrier: Carrier,
                                                           image: str) -> None:
        """up never removes a container it did not create: the clash is one line, exit 125."""
        assert carrier("run", "--name", "pair-left", "--network", "none", image, "true").code == 0
        res = carrier("up", "-d", str(SUPERVISORS / "pair.toml"))
        assert res.code == 125
        assert res.err.count("\n") == 1, res.err
        assert "pair-left" in res.err
        assert carrier("rm", "pair-left").code == 0


def _fill(path: Path, leave: int) -> None:
    """Fill the filesystem of *path* until only *leave* bytes are free (0: until ENOSPC)."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(path / "filler", "wb", buffering=0) as f:
        chunk = b"\0" * (1 << 20)
        remaining = max(0, free - leave)
        try:
            while remaining > 0:
                remaining -= f.write(chunk[: min(len(chunk), remaining)])
            if leave == 0:
                for _ in range(1 << 16):  # bounded: a tmpfs of 32 MiB fills long before
                    f.write(chunk[:4096])
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise


@pytest.fixture
def small_fs() -> Iterator[Path]:
    """A private directory on the small filesystem scripts/sandbox provides."""
    base = os.environ.get("CARRIER_SMALL_FS")
    if not base:
        pytest.skip("no small filesystem: run the tests through scripts/sandbox")
    work = Path(tempfile.mkdtemp(dir=base))
    yield work
    subprocess.run(["rm", "-rf", str(work)], check=False)


class TestFullDisk:
    @pytest.fixture
    def carrier_root(self, small_fs: Path) -> Path:
        """The Carrier root on the small filesystem."""
        return small_fs / "root"

    @pytest.mark.parametrize("leave", [0, 8 << 10, 24 << 10])
    def test_full_disk(self, carrier: Carrier, image: str, small_fs: Path, leave: int) -> None:
        """On a full disk a run fails in one line that says so (125) and leaves nothing but, as
        Docker keeps a container whose start failed, at most its record (exited, 125, the reason
        naming the disk), which rm removes; reading and removing commands work, also stopping
        and removing a running container."""
        res = carrier("run", "-d", "--name", "keep", "--network", "none", "--stop-timeout", "0.5",
                      image, "sleep", "1000")
        assert res.code == 0, res.err
        keep = carrier.record("keep")
        _fill(small_fs, leave)
        res = carrier("run", "-d", "--name", "full", "--network", "none", image, "sleep", "100")
        assert res.code == 125
        assert res.err.count("\n") == 1, res.err
        assert "no space left on device" in res.err.lower()
        for args in (["ps", "-a"], ["images"], ["info", "keep"], ["logs", "keep"]):
            res = carrier(*args)
            assert res.code == 0, (args, res.err)
        if any(line.endswith(" full") for line in carrier("ps", "-a").out.splitlines()):
            failed = carrier.record("full")  # where its record could still be written
            assert (failed["status"], failed["exit_code"]) == ("exited", 125), failed
            assert "no space left on device" in str(failed["reason"]).lower(), failed
            assert (failed["holder_pid"], failed["container_pid"]) == (None, None), failed
            assert carrier("rm", "full").code == 0
        assert "full" not in carrier("ps", "-a").out
        assert carrier("info", "full").code == 125
        containers = list((carrier.root / "containers").iterdir())
        assert [c.name for c in containers] == [keep["id"]], "the failed run left nothing"
        assert sorted(p.name for p in (carrier.root / "names").iterdir()) == ["keep"]
        assert carrier("stop", "keep").code == 0
        wait_unsupervised(keep)
        res = carrier("rm", "-f", "keep")
        assert res.code == 0, res.err
        assert not list((carrier.root / "containers").iterdir())
        assert not list((carrier.root / "names").iterdir())
        (small_fs / "filler").unlink()
        res = carrier("run", "--rm", "--name", "full", "--network", "none", image, "true")
        assert res.code == 0, res.err


class TestRunDir:
    @pytest.mark.parametrize("helper", HELPERS)
    def test_a_squatted_shared_path_blocks_nothing(self, carrier: Carrier, image: str,
                                                   helper: str) -> None:
        """Without XDG_RUNTIME_DIR, what sits at /tmp/carrier-run-<uid> (another user's
        directory, or anything) does not stop a networked run, and nothing is written through
        it (Carrier keeps no socket in a shared path)."""
        squat = Path(f"/tmp/carrier-run-{os.getuid()}")
        if squat.is_dir() and not squat.is_symlink():
            subprocess.run(["rm", "-rf", str(squat)], check=True)
        squat.unlink(missing_ok=True)
        squat.symlink_to("/nonexistent-other-users-dir")
        try:
            carrier.env.pop("XDG_RUNTIME_DIR", None)
            res = carrier("run", "--rm", "--network", helper, image, "true")
            assert res.code == 0, res.err
            assert not Path("/nonexistent-other-users-dir").exists()
        finally:
            squat.unlink()
