"""``tag``, ``images -q``, ``save`` (docker-archive and oci-archive, read back by ``carrier load``
and by ``podman load``) and ``system df``, run rootless against a real store and containers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
from conftest import Carrier, Result
from helpers import wait_pidfd
from oci import build_layout


def stored(root: Path) -> dict[str, str]:
    """Every file under the Carrier root and a digest of its content (links: their target)."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path)] = "-> " + str(path.readlink())
        elif path.is_file():
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def ok(res: Result) -> str:
    """The output of a command that must have succeeded."""
    assert res.code == 0, res.err
    return res.out


def refused(res: Result) -> str:
    """The one line of a command that must have been refused as bad input."""
    assert res.code == 125, (res.out, res.err)
    assert res.err.startswith("carrier: "), res.err
    assert res.err.count("\n") == 1, res.err
    return res.err


class TestTag:
    def test_tag_and_images_q(self, carrier: Carrier, image: str) -> None:
        """tag gives an image more names (images lists each, images -q the id once), a run
        by the new name uses it, and rmi of one name only untags it."""
        ok(carrier("tag", image, "mine:1", "localhost/x/y"))
        names = ok(carrier("images", "--format", "{{.Repository}}:{{.Tag}}")).split()
        assert sorted(names) == ["busybox:latest", "localhost/x/y:latest", "mine:1"]
        assert len(set(ok(carrier("images", "--format", "{{.ID}}")).split())) == 1
        assert len(ok(carrier("images", "-q")).split()) == 1
        assert ok(carrier("run", "--rm", "mine:1", "echo", "tagged")) == "tagged\n"
        assert ok(carrier("rmi", "mine:1")) == "Untagged: mine:1\n"
        assert len(ok(carrier("images", "--format", "{{.Tag}}")).split()) == 2

    @pytest.mark.parametrize("args", [
        ("tag", "busybox", "Bad:Name:"),
        ("tag", "busybox", "ok:1", "x@sha256:" + "0" * 64),
        ("tag", "nope", "x"),
        ("tag", "busybox"),
    ])
    def test_tag_bad_input(self, carrier: Carrier, image: str, args: tuple[str, ...]) -> None:
        """A bad target (even after a good one), a digest, a missing image or no target: one
        line, 125, and no name changes."""
        before = stored(carrier.root)
        refused(carrier(*args))
        assert stored(carrier.root) == before


def podman_load(archive: Path, tmp_path: Path) -> list[str]:
    """Load *archive* with Podman (rootless, a private store) and return the names it lists;
    Podman's pause process and store are removed afterwards."""
    run_dir = Path(tempfile.mkdtemp(prefix="podman-run.", dir="/tmp"))  # Podman: < 50 chars
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run_dir), "HOME": str(tmp_path)}
    base = ["podman", "--root", str(tmp_path / "proot"), "--runroot", str(run_dir / "r"),
            "--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs"]
    try:
        loaded = subprocess.run([*base, "load", "-i", str(archive)], env=env,
                                capture_output=True, text=True, timeout=120)
        assert loaded.returncode == 0, loaded.stderr
        listed = subprocess.run([*base, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
                                env=env, check=True, capture_output=True, text=True, timeout=60)
        subprocess.run([*base, "rmi", "-a", "-f"], env=env, check=True, capture_output=True,
                       timeout=60)
    finally:
        pause = run_dir / "libpod" / "tmp" / "pause.pid"
        if pause.exists():
            pid = int(pause.read_text())
            os.kill(pid, 9)
            wait_pidfd(pid)
        shutil.rmtree(run_dir)
    return sorted(listed.stdout.splitlines())


class TestSave:
    @pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
    def test_save_load_round_trip(self, carrier: Carrier, image: str, tmp_path: Path,
                                  fmt: str) -> None:
        """save -o writes an archive of the chosen format that carrier load reads into another
        root (the image runs there) and that podman load reads, the same image id each time."""
        ok(carrier("tag", image, "mine:1"))
        archive = tmp_path / "saved.tar"
        ok(carrier("save", "-o", str(archive), "--format", fmt, "mine:1"))
        with tarfile.open(archive) as tar:
            members = tar.getnames()
        assert ("manifest.json" in members) == (fmt == "docker-archive")
        assert ("index.json" in members) == (fmt == "oci-archive")
        again = tmp_path / "again.tar"
        ok(carrier("save", "-o", str(again), "--format", fmt, "mine:1"))
        assert again.read_bytes() == archive.read_bytes()  # the same bytes on every save
        other = Carrier(tmp_path / "other-root")
        assert ok(other("load", "-i", str(archive))) == "Loaded image: mine:1\n"
        image_id = ok(other("images", "--format", "{{.ID}}")).strip()
        assert ok(other("run", "--rm", "mine:1", "echo", "loaded")) == "loaded\n"
        assert ok(other("system", "df", "--format", "{{.Type}}={{.Total}}")).splitlines()[:2] \
            == ["Images=1", "Containers=0"]
        if shutil.which("podman") is not None:
            assert podman_load(archive, tmp_path) == [f"docker.io/library/mine:1 {image_id}"]

    def test_save_to_stdout_and_load_from_stdin(self, carrier: Carrier, image: str,
                                                tmp_path: Path) -> None:
        """Without -o, save writes the archive to standard output (the same bytes as -o), and
        without -i, load reads one from standard input, also through a pipe: ``save | load``."""
        ok(carrier("tag", image, "piped:1"))
        archive = tmp_path / "file.tar"
        ok(carrier("save", "-o", str(archive), "piped:1"))
        redirected = tmp_path / "stdout.tar"
        with redirected.open("wb") as out:
            proc = subprocess.run(carrier.argv("save", "piped:1"), env=carrier.env, stdout=out,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert redirected.read_bytes() == archive.read_bytes()
        other = Carrier(tmp_path / "other-root")
        saver = subprocess.Popen(carrier.argv("save", "piped:1"), env=carrier.env,
                                 stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert saver.stdout is not None
        try:
            loader = subprocess.run(other.argv("load"), env=other.env, stdin=saver.stdout,
                                    capture_output=True, text=True, timeout=60)
        finally:
            saver.stdout.close()
            assert saver.wait(timeout=60) == 0
        assert (loader.returncode, loader.stdout) == (0, "Loaded image: piped:1\n"), loader.stderr
        assert ok(other("run", "--rm", "piped:1", "echo", "loaded")) == "loaded\n"
        assert not [p for p in (other.root / "tmp").iterdir()]  # the spool is gone

    def test_save_to_a_pipe_closed_early_fails(self, carrier: Carrier, image: str) -> None:
        """A reader that goes away before the archive is complete fails the save (one line,
        125): a cut archive is not a success, as `ps | head` is."""
        saver = subprocess.Popen(carrier.argv("save", image), env=carrier.env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False)
        assert saver.stdout is not None
        assert saver.stderr is not None
        assert len(saver.stdout.read(512)) == 512
        saver.stdout.close()
        err = saver.stderr.read().decode()
        assert saver.wait(timeout=60) == 125
        assert err.strip() == "carrier: standard output closed before the archive was complete"

    @pytest.mark.parametrize("args", [["save", "busybox"], ["load"]])
    def test_archive_to_or_from_a_terminal_is_refused(self, carrier: Carrier, image: str,
                                                      args: list[str]) -> None:
        """An archive is never written to or read from a terminal: one line and 125."""
        import pty

        leader, follower = pty.openpty()
        try:
            proc = subprocess.run(carrier.argv(*args), env=carrier.env, stdin=follower,
                                  stdout=follower, stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(follower)
            os.close(leader)
        assert proc.returncode == 125
        assert len(proc.stderr.strip().splitlines()) == 1
        assert "terminal" in proc.stderr

    def test_save_several(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """A docker-archive holds several images, each with the name it was saved by, and a
        layer they share once."""
        ok(carrier("tag", image, "second:2"))
        archive = tmp_path / "two.tar"
        ok(carrier("save", "-o", str(archive), image, "second:2"))
        with tarfile.open(archive) as tar:
            manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            layers = [n for n in tar.getnames() if n.endswith("/layer.tar")]
        assert [m["RepoTags"] for m in manifest] == [["docker.io/library/busybox:latest"],
                                                     ["docker.io/library/second:2"]]
        assert manifest[0]["Layers"] == manifest[1]["Layers"] == layers

    @pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
    def test_save_keeps_whiteouts(self, carrier: Carrier, tmp_path: Path, fmt: str) -> None:
        """A layer's deletions and opaque directories are saved as OCI .wh. entries, so the
        image loaded back shows the same files (the deleted one gone, the opaque dir's old
        content hidden)."""
        build_layout(tmp_path / "layout", gzip_layers=False)
        ok(carrier("load", "-i", str(tmp_path / "layout")))
        image_id = ok(carrier("images", "-q")).strip()
        script = "ls /etc/removed 2>&1; ls /opq; cat /hello.txt"
        want = ok(carrier("run", "--rm", "--entrypoint", "", image_id, "sh", "-c", script))
        assert "No such file" in want
        assert "old" not in want
        archive = tmp_path / "saved.tar"
        ok(carrier("save", "-o", str(archive), "--format", fmt, image_id))
        with tarfile.open(archive) as outer:
            entries = set()
            for member in outer.getmembers():
                data = outer.extractfile(member)
                if data is None or data.read(1) in (b"{", b"["):  # a directory, a JSON document
                    continue
                data.seek(0)
                with tarfile.open(fileobj=data) as layer:
                    entries.update(layer.getnames())
        assert {"etc/.wh.removed", "opq/.wh..wh..opq", "opq/new"} <= entries
        other = Carrier(tmp_path / "other-root")
        ok(other("load", "-i", str(archive)))
        loaded = ok(other("images", "-q")).strip()
        assert ok(other("run", "--rm", "--entrypoint", "", loaded, "sh", "-c", script)) == want

    @pytest.mark.parametrize("args", [
        ("save", "-o", "{out}", "nope"),
        ("save", "-o", "{out}", "--format", "docker-dir", "busybox"),
        ("save", "-o", "{out}", "--format", "oci-archive", "busybox", "busybox"),
        ("save", "-o", "{out}"),
        ("save", "-o", "/nonexistent-dir/x.tar", "busybox"),
    ])
    def test_save_bad_input(self, carrier: Carrier, image: str, tmp_path: Path,
                            args: tuple[str, ...]) -> None:
        """A missing image, format or output directory, no image, or several images in one OCI
        archive: one line, 125, no archive written and nothing stored changes."""
        out = tmp_path / "out.tar"
        before = stored(carrier.root)
        refused(carrier(*(a.replace("{out}", str(out)) for a in args)))
        assert not out.exists()
        assert list(tmp_path.glob(".out.tar.*")) == []
        assert stored(carrier.root) == before


class TestSystemDf:
    def test_df_counts_and_reclaimable(self, carrier: Carrier, image: str) -> None:
        """system df counts images, containers and volumes, which are in use, their sizes,
        and what removing the unused ones would free."""
        def df() -> dict[str, dict[str, object]]:
            rows = json.loads(ok(carrier("system", "df", "--format", "json")))
            return {r["Type"]: r for r in rows}

        ok(carrier("volume", "create", "used"))
        ok(carrier("volume", "create", "unused"))
        ok(carrier("run", "--name", "ran", "-v", "used:/data", image, "sh", "-c",
                   "head -c 100000 /dev/zero > /data/f; head -c 50000 /dev/zero > /written"))
        rows = df()
        assert (rows["Images"]["Total"], rows["Images"]["Active"]) == (1, 1)
        assert rows["Images"]["Reclaimable"] == 0
        assert int(rows["Images"]["Size"]) > 1_000_000  # type: ignore[call-overload]  # busybox
        assert (rows["Containers"]["Total"], rows["Containers"]["Active"]) == (1, 0)
        assert rows["Containers"]["Reclaimable"] == rows["Containers"]["Size"]
        assert (rows["Local Volumes"]["Total"], rows["Local Volumes"]["Active"]) == (2, 1)
        assert int(rows["Local Volumes"]["Size"]) >= 100_000  # type: ignore[call-overload]
        assert rows["Local Volumes"]["Reclaimable"] == 0  # the unused one is empty
        ok(carrier("run", "-d", "--name", "up", image, "sleep", "1000"))
        rows = df()
        assert (rows["Containers"]["Total"], rows["Containers"]["Active"]) == (2, 1)
        table = ok(carrier("system", "df")).splitlines()
        assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
        assert table[1].split()[:3] == ["Images", "1", "1"]
        ok(carrier("rm", "-f", "up", "ran"))
        rows = df()
        assert (rows["Images"]["Active"], rows["Containers"]["Total"]) == (0, 0)
        assert rows["Images"]["Reclaimable"] == rows["Images"]["Size"]
        assert rows["Local Volumes"]["Reclaimable"] == rows["Local Volumes"]["Size"]
