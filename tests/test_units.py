"""Unit tests: parsing, lifecycle rules and safe unpacking, with no processes started."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest

import carrier
from carrier._cli import _app as _cli
from carrier._images._extract import UnsafeArchiveError
from carrier._images._layers import Layers
from carrier._runtime._bundle import parse_env
from carrier._sandbox._idmap import subordinate_range
from carrier._state._records import Record, Spec, Status
from carrier._util._errors import CarrierError, ConflictError
from carrier._util._root import Root


class TestExports:
    def test_all_is_sorted_and_complete(self) -> None:
        """``carrier.__all__`` lists exactly the public names, sorted."""
        public = {n for n in dir(carrier) if not n.startswith("_")}
        assert sorted(carrier.__all__) == carrier.__all__
        assert set(carrier.__all__) == public

    def test_every_public_name_loads_from_its_layer(self) -> None:
        """Each public name is found where ``carrier/__init__.py`` says, and the names that
        type checkers see (its ``TYPE_CHECKING`` imports) are exactly ``__all__``."""
        import ast
        import importlib

        for name in carrier.__all__:
            obj = getattr(carrier, name)
            home = importlib.import_module(f"carrier.{carrier._HOME[name]}")
            assert getattr(home, name) is obj, name
            if not isinstance(obj, types.UnionType):  # a union alias has no module of its own
                assert obj.__module__ == home.__name__, name
        tree = ast.parse(Path(carrier.__file__).read_text())
        typed = {alias.asname for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 for alias in node.names if alias.asname}
        assert typed == set(carrier.__all__) == set(carrier._HOME)


class TestTypedLibrary:
    def test_docs_examples_pass_and_typos_fail_mypy(self, tmp_path: Path) -> None:
        """The examples in docs/library.md pass ``mypy --strict``, and a caller's typo in an
        option's name or fixed value fails it."""
        import re

        src = Path(carrier.__file__).parent.parent
        blocks = re.findall(r"```python\n(.*?)```", (src / "docs" / "library.md").read_text(), re.S)
        assert len(blocks) >= 3
        files = []
        for n, block in enumerate(blocks):
            files.append(tmp_path / f"doc_example_{n}.py")
            files[-1].write_text(block)
        typos = tmp_path / "typos.py"
        typos.write_text(
            "import carrier\n\n\nasync def f() -> None:\n"
            '    async with carrier.run("busybox", network="pasat"):\n        pass\n'
            '    async with carrier.run("busybox", pull="sometimes"):\n        pass\n'
            '    async with carrier.run("busybox", health_on_failure="explode"):\n        pass\n'
            '    async with carrier.run("busybox", stop_timout=1):\n        pass\n'
            '    async with carrier.run("busybox", ports={80: 8.5}):\n        pass\n'
        )
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
             str(tmp_path / "cache"), *map(str, files), str(typos)],
            cwd=src, capture_output=True, text=True, timeout=300,
        )
        errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
        assert not [e for e in errors if "doc_example" in e], proc.stdout
        assert sorted({int(e.split(":")[1]) for e in errors}) == [5, 7, 9, 11, 13], proc.stdout


class TestRunArgv:
    @pytest.mark.parametrize(
        ("tokens", "expected"),
        [
            (["run", "img", "sh", "-c", "x"], ["run", "img", "--", "sh", "-c", "x"]),
            (["run", "--rm", "-e", "A=1", "img", "-x"], ["run", "--rm", "-e", "A=1", "img", "--", "-x"]),
            (["run", "--name=n", "-d", "img"], ["run", "--name=n", "-d", "img", "--"]),
            (["run", "img", "--", "x"], ["run", "img", "--", "x"]),
            (["ps", "-a"], ["ps", "-a"]),
        ],
    )
    def test_split_after_image(self, tokens: list[str], expected: list[str]) -> None:
        """``--`` goes right after the image, whatever options come before it."""
        assert _cli._split_run(tokens) == expected

    def test_flags_follow_the_signature(self) -> None:
        """The value-less options are exactly run's bool parameters (with their aliases)."""
        assert {"-d", "--detach", "--rm", "-i", "--interactive"} <= _cli._FLAGS["run"]
        assert "-e" not in _cli._FLAGS["run"]
        assert "--name" not in _cli._FLAGS["run"]


class TestEnv:
    def test_overlay(self) -> None:
        """CLI values override the image's; order is kept."""
        assert parse_env(["B=2", "C=3"], base=["A=1", "B=1"]) == ["A=1", "B=2", "C=3"]

    def test_bare_key_takes_host_value(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """``-e KEY`` copies the host's value, and is skipped when the host has none."""
        monkeypatch.setenv("FROM_HOST", "yes")
        monkeypatch.delenv("ABSENT", raising=False)
        assert parse_env(["FROM_HOST", "ABSENT"]) == ["FROM_HOST=yes"]

    @pytest.mark.parametrize("bad", ["=x", "", "A B=1"])
    def test_malformed(self, bad: str) -> None:
        """Malformed items are refused with the item named."""
        with pytest.raises(CarrierError, match="invalid environment variable"):
            parse_env([bad])


class TestLifecycle:
    def _record(self) -> Record:
        return Record(id="0" * 64, name="n", spec=Spec("i", "sha256:" + "0" * 64, ["true"], [],
                                                           "/", "0", "n"))

    def test_legal_path(self) -> None:
        """created -> running -> exited is allowed."""
        r = self._record()
        r.transition(Status.RUNNING)
        r.transition(Status.EXITED)
        assert r.status is Status.EXITED

    def test_illegal_move(self) -> None:
        """running -> created is refused in the one place that checks moves."""
        r = self._record()
        r.transition(Status.RUNNING)
        with pytest.raises(ConflictError):
            r.transition(Status.CREATED)

    def test_round_trip(self) -> None:
        """A record survives its JSON form."""
        r = self._record()
        assert Record.from_json(r.to_json()) == r


class TestSubordinateIds:
    def test_by_name_or_uid(self, tmp_path: Path) -> None:
        """Entries are found by user name or numeric uid."""
        f = tmp_path / "subuid"
        f.write_text("alice:100000:65536\n2000:200000:1000\n")
        assert subordinate_range(f, "alice", 1000) == (100000, 65536)
        assert subordinate_range(f, "bob", 2000) == (200000, 1000)
        assert subordinate_range(f, "carol", 3000) is None
        assert subordinate_range(tmp_path / "missing", "alice", 1) is None


def _tar(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    path = tmp_path / "layer.tar"
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = mode
    return info


def unpack(archive: Path, dest: Path) -> None:
    """Add *archive* to a layer store beside it and link the unpacked tree to *dest*."""
    layers = Layers(Root.open(archive.parent / "root"))
    dest.symlink_to(layers.path(layers.add(archive, label="test-layer")))


class TestUnpack:
    def test_absolute_symlinks_are_kept(self, tmp_path: Path) -> None:
        """A rootfs's absolute symlinks (resolved inside the container) are legitimate."""
        archive = _tar(tmp_path, (_entry("bin/sh", tarfile.SYMTYPE, "/bin/busybox"), None))
        unpack(archive, tmp_path / "out")
        assert os.readlink(tmp_path / "out" / "bin" / "sh") == "/bin/busybox"

    def test_dotdot_is_refused(self, tmp_path: Path) -> None:
        """An entry climbing out with .. is refused and nothing lands outside."""
        archive = _tar(tmp_path, (_entry("../escape"), b"x"))
        with pytest.raises(UnsafeArchiveError):
            unpack(archive, tmp_path / "out")
        assert not (tmp_path / "escape").exists()

    def test_write_through_symlink_is_refused(self, tmp_path: Path) -> None:
        """A symlink to outside followed by a write through it never touches the outside."""
        outside = tmp_path / "outside"
        outside.mkdir()
        archive = _tar(tmp_path, (_entry("etc", tarfile.SYMTYPE, str(outside)), None),
                       (_entry("etc/passwd"), b"owned"))
        with pytest.raises(UnsafeArchiveError):
            unpack(archive, tmp_path / "out")
        assert not (outside / "passwd").exists()

    def test_symlink_chain_past_path_max_is_refused(self, tmp_path: Path) -> None:
        """CVE-2025-4517's shape: a chain of symlinks whose resolved path exceeds PATH_MAX, where
        ``realpath`` stops checking and the kernel goes on following links. No write through
        any symlink is allowed, so nothing lands outside."""
        outside = tmp_path / "outside"
        outside.mkdir()
        comp, steps, entries = "d" * 247, "abcdefghijklmnop", []
        step_path = ""
        for step in steps:
            entries.append((_entry(os.path.join(step_path, comp), tarfile.DIRTYPE, mode=0o755), None))
            entries.append((_entry(os.path.join(step_path, step), tarfile.SYMTYPE, comp), None))
            step_path = os.path.join(step_path, step)
        deep = os.path.join(step_path, "l" * 254)  # resolved, this is longer than PATH_MAX
        entries.append((_entry(deep, tarfile.DIRTYPE, mode=0o755), None))
        entries.append((_entry(os.path.join(deep, "x"), tarfile.SYMTYPE, str(outside)), None))
        entries.append((_entry(os.path.join(deep, "x", "evil")), b"owned"))
        archive = _tar(tmp_path, *entries)
        with pytest.raises(UnsafeArchiveError, match="is a symlink"):
            unpack(archive, tmp_path / "out")
        assert list(outside.iterdir()) == []

    def test_hardlink_to_a_symlink_is_refused(self, tmp_path: Path) -> None:
        """A hard link to one of the layer's symlinks would link what the symlink points at."""
        secret = tmp_path / "secret"
        secret.write_text("s")
        archive = _tar(tmp_path, (_entry("s", tarfile.SYMTYPE, str(secret)), None),
                       (_entry("link", tarfile.LNKTYPE, "s"), None))
        with pytest.raises(UnsafeArchiveError):
            unpack(archive, tmp_path / "out")
        assert secret.stat().st_nlink == 1

    def test_hardlink_outside_is_refused(self, tmp_path: Path) -> None:
        """A hard link to a file outside the tree is refused."""
        target = tmp_path / "secret"
        target.write_text("s")
        archive = _tar(tmp_path, (_entry("link", tarfile.LNKTYPE, str(target)), None))
        with pytest.raises(UnsafeArchiveError):
            unpack(archive, tmp_path / "out")

    def test_absolute_name_is_contained(self, tmp_path: Path) -> None:
        """An absolute entry name lands inside the tree, never at the host path."""
        archive = _tar(tmp_path, (_entry("/tmp-carrier-abs-test"), b"x"))
        unpack(archive, tmp_path / "out")
        assert (tmp_path / "out" / "tmp-carrier-abs-test").exists()
        assert not Path("/tmp-carrier-abs-test").exists()

    def test_setuid_is_neutralised(self, tmp_path: Path) -> None:
        """setuid and setgid bits are cleared."""
        archive = _tar(tmp_path, (_entry("bin/su", mode=0o4755), b"x"))
        unpack(archive, tmp_path / "out")
        assert (tmp_path / "out" / "bin" / "su").stat().st_mode & 0o6000 == 0

    def test_device_nodes_skipped_rootless(self, tmp_path: Path) -> None:
        """Device nodes are skipped by a rootless unpack."""
        null = _entry("dev/null", tarfile.CHRTYPE)
        null.devmajor, null.devminor = 1, 3
        archive = _tar(tmp_path, (null, None), (_entry("ok"), b"1"))
        unpack(archive, tmp_path / "out")
        assert not (tmp_path / "out" / "dev" / "null").exists()
        assert (tmp_path / "out" / "ok").exists()


class TestNameRace:
    def test_only_one_of_two_racers_wins(self, tmp_path: Path) -> None:
        """Two creators racing for one name: exactly one gets it, the other a clear error."""
        import threading

        from carrier._state._records import Containers
        from carrier._util._root import Root

        containers = Containers(Root.open(tmp_path / "root"))
        barrier = threading.Barrier(8)
        outcomes: list[str] = []

        def racer() -> None:
            spec = Spec("i", "sha256:" + "0" * 64, ["true"], [], "/", "0", "")
            barrier.wait()
            try:
                _, lock = containers.create(spec, "same")
                os.close(lock)
                outcomes.append("won")
            except ConflictError:
                outcomes.append("lost")

        threads = [threading.Thread(target=racer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["lost"] * 7 + ["won"]
        assert len(list(containers.all())) == 1


class TestTerminalEnv:
    def _rootfs(self, tmp_path: Path, terms: list[str]) -> Path:
        for term in terms:
            entry = tmp_path / "usr" / "share" / "terminfo" / term[0] / term
            entry.parent.mkdir(parents=True, exist_ok=True)
            entry.write_bytes(b"")
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/ash\n"
                                                 "app:x:1000:1000::/home/app:/bin/sh\n")
        return tmp_path

    @pytest.mark.parametrize(("known", "ours", "expected"), [
        (["xterm-256color", "xterm"], "xterm-256color", "xterm-256color"),
        (["xterm"], "alacritty", "xterm"),
        ([], "xterm-kitty", "vt100"),
    ])
    def test_term_mapping(self, tmp_path: Path, known: list[str], ours: str, expected: str) -> None:
        """TERM is ours if the container knows it, else xterm, else vt100."""
        from carrier._runtime._terminal import container_term

        assert container_term(self._rootfs(tmp_path, known), ours) == expected

    def test_session_env_from_passwd(self, tmp_path: Path) -> None:
        """HOME, USER/LOGNAME and SHELL come from the container's passwd entry."""
        from carrier._runtime._terminal import session_env

        env = session_env(self._rootfs(tmp_path, []), 1000, "PATH=/bin", "xterm", None)
        assert env == ["TERM=vt100", "HOME=/home/app", "PATH=/bin", "USER=app", "LOGNAME=app",
                       "SHELL=/bin/sh", "LANG=C.UTF-8"]


class TestRestartTracker:
    def test_backoff_doubles_to_the_cap(self) -> None:
        """Delays double from the first one up to the maximum."""
        from carrier._supervision._restart import RestartPolicy, RestartTracker

        t = RestartTracker(RestartPolicy("always", delay=1, max_delay=4, intensity=100, period=1))
        delays = [t.decide(1, stopped=False, now=float(i * 10), ran_for=0.1) for i in range(5)]
        assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]

    def test_long_run_resets_the_backoff(self) -> None:
        """A run that lasted longer than the maximum delay starts the backoff over."""
        from carrier._supervision._restart import RestartPolicy, RestartTracker

        t = RestartTracker(RestartPolicy("always", delay=1, max_delay=4, intensity=100, period=1))
        assert t.decide(1, stopped=False, now=0, ran_for=0) == 1.0
        assert t.decide(1, stopped=False, now=10, ran_for=0) == 2.0
        assert t.decide(1, stopped=False, now=20, ran_for=60) == 1.0

    def test_intensity_is_a_sliding_window(self) -> None:
        """More than N restarts within T seconds gives up; older ones fall out of the window."""
        from carrier._supervision._restart import RestartPolicy, RestartTracker

        t = RestartTracker(RestartPolicy("always", delay=0, max_delay=0, intensity=2, period=10))
        assert t.decide(1, stopped=False, now=0, ran_for=0) == 0.0
        assert t.decide(1, stopped=False, now=1, ran_for=0) == 0.0
        assert isinstance(t.decide(1, stopped=False, now=2, ran_for=0), str)
        assert t.decide(1, stopped=False, now=11, ran_for=0) == 0.0

    def test_stop_and_no_and_success(self) -> None:
        """A stop, policy no, and on-failure after success all end without a restart."""
        from carrier._supervision._restart import RestartPolicy, RestartTracker

        assert RestartTracker(RestartPolicy("always")).decide(1, stopped=True, now=0, ran_for=0) is None
        assert RestartTracker(RestartPolicy("no")).decide(1, stopped=False, now=0, ran_for=0) is None
        on_failure = RestartTracker(RestartPolicy("on-failure"))
        assert on_failure.decide(0, stopped=False, now=0, ran_for=0) is None


class TestFdLimit:
    def test_soft_limit_raised_to_hard(self) -> None:
        """A supervisor lifts its open-files soft limit to the hard one (about ten descriptors
        per container: 1024 would cap one process near 100 containers)."""
        code = ("import resource; from carrier._util._process import raise_fd_limit; "
                "h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
                "resource.setrlimit(resource.RLIMIT_NOFILE, (256, h)); raise_fd_limit(); "
                "print(resource.getrlimit(resource.RLIMIT_NOFILE) == (h, h), h > 256)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["True", "True"], out.stderr


class TestCopyDriver:
    def test_upper_file_never_writes_through_a_lower_symlink(self, tmp_path: Path) -> None:
        """A lower layer's ``etc/passwd -> /host/file`` and an upper layer's regular
        ``etc/passwd``: the copy replaces the symlink, the host file is untouched."""
        import anyio

        from carrier._storage._copy import copy_layers

        victim = tmp_path / "victim"
        victim.write_text("host\n")
        lower, upper = tmp_path / "lower", tmp_path / "upper"
        (lower / "etc").mkdir(parents=True)
        (lower / "etc" / "passwd").symlink_to(victim)
        (upper / "etc").mkdir(parents=True)
        (upper / "etc" / "passwd").write_text("image\n")
        anyio.run(copy_layers, (lower, upper), tmp_path / "rootfs")
        assert victim.read_text() == "host\n"
        copied = tmp_path / "rootfs" / "etc" / "passwd"
        assert not copied.is_symlink()
        assert copied.read_text() == "image\n"

    def test_merged_lookup_honours_whiteouts_and_opaque_directories(self, tmp_path: Path) -> None:
        """What fuse-overlayfs copies up before the start is what the merged tree shows."""
        from carrier._storage._copy import top_entry

        lower, upper = tmp_path / "l1", tmp_path / "l2"
        (lower / "etc").mkdir(parents=True)
        (lower / "etc" / "passwd").write_text("root\n")
        (upper / "etc").mkdir(parents=True)
        assert top_entry((lower, upper), "etc/passwd") == lower / "etc" / "passwd"
        os.setxattr(upper / "etc", "user.overlay.opaque", b"y")
        assert top_entry((lower, upper), "etc/passwd") is None
        os.removexattr(upper / "etc", "user.overlay.opaque")
        os.mknod(upper / "etc" / "passwd", 0o020000, 0)  # a whiteout
        assert top_entry((lower, upper), "etc/passwd") is None


class TestLayerRace:
    def test_two_adders_of_one_layer_both_succeed(self, tmp_path: Path) -> None:
        """Two processes unpacking the same layer at once: both get its diff id, the layer is
        complete, and no staging is left."""
        archive = _tar(tmp_path, (_entry("f"), b"x" * 100_000))
        root = tmp_path / "root"
        Root.open(root)
        code = ("import sys; from pathlib import Path; from carrier._images._layers import Layers; "
                "from carrier._util._root import Root; "
                "print(Layers(Root.open(sys.argv[1])).add(Path(sys.argv[2]), label='race'))")
        procs = [subprocess.Popen([sys.executable, "-c", code, str(root), str(archive)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        results = [p.communicate(timeout=60) for p in procs]
        assert all(p.returncode == 0 for p in procs), results
        assert len({out.strip() for out, _ in results}) == 1
        layers = Layers(Root.open(root))
        (diff_id,) = layers.all()
        assert (layers.path(diff_id) / "f").stat().st_size == 100_000
        assert [p.name for p in layers.dir.iterdir()] == [diff_id.removeprefix("sha256:")]

    def test_incomplete_leftover_is_replaced(self, tmp_path: Path) -> None:
        """A layer directory without its size file (never complete) is not trusted: the next
        add replaces it."""
        archive = _tar(tmp_path, (_entry("f"), b"fresh"))
        layers = Layers(Root.open(tmp_path / "root"))
        diff_id = layers.add(archive, label="first")
        (layers.path(diff_id) / "f").write_text("stale")
        (layers.path(diff_id).parent / "size").unlink()
        assert not layers.has(diff_id)
        assert layers.add(archive, label="again") == diff_id
        assert (layers.path(diff_id) / "f").read_text() == "fresh"


def _init_of(command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """*command* as PID 1 of a new PID namespace (rootless: in a user namespace); its host pid
    once it runs (``ready`` on its stdout)."""
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child",
                             *command],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    (child,) = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    return proc, int(child)


@pytest.mark.parametrize(("script", "discarded"), [
    ("echo ready; exec sleep 1000", True),  # sleep: no handler
    ("trap '' TERM; echo ready; sleep 1000 & wait", True),  # ignored
    ("trap 'exit 3' TERM; echo ready; sleep 1000 & wait", False),  # handled
])
def test_discards_knows_what_a_namespace_init_never_receives(script: str, discarded: bool) -> None:
    """A PID namespace's init without a handler for a signal never receives it from outside;
    one with a handler does, and so does any process that is not such an init."""
    import signal

    from carrier._util._process import discards

    proc, init = _init_of(["sh", "-c", script])
    try:
        assert discards(init, signal.SIGTERM) is discarded
        os.kill(init, signal.SIGTERM)
        if not discarded:  # received: its handler ends it
            assert proc.wait(timeout=30) == 3
    finally:
        proc.kill()
        proc.wait(timeout=30)
    plain = subprocess.Popen(["sleep", "1000"])
    try:
        assert not discards(plain.pid, signal.SIGTERM)  # not an init: SIGTERM would end it
    finally:
        plain.kill()
        plain.wait(timeout=30)
