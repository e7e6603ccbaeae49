"""Shared fixtures: a private Carrier root, a busybox image, the CLI, and leak checks."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")


FORK_SERVER = "carrier._cli._zygote"  # resident by design (docs/performance.md), no leak


def user_processes() -> dict[int, str]:
    """Live (non-zombie) processes of this user, except this test process and the fork server
    (its forked commands carry their caller's command line, and count): pid -> cmdline."""
    found = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}")
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if st.st_uid == os.getuid() and fields[0] != b"Z" and FORK_SERVER not in cmd:
            found[int(entry)] = cmd
    return found


def still_alive(processes: dict[int, str], bound: float = 10.0) -> dict[int, str]:
    """Those of *processes* that have not exited within *bound* seconds in all, waited for on
    pidfds: one that is exiting (its command line already gone) or a zombie is no leak."""
    deadline = time.monotonic() + bound
    alive = {}
    for pid, cmd in processes.items():
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                continue  # it exited
        finally:
            os.close(fd)
        alive[pid] = cmd
    return alive


@dataclass
class Result:
    """A finished carrier command."""

    code: int
    out: str
    err: str


class Carrier:
    """Runs the real ``carrier`` command line against one private Carrier root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "CARRIER_ROOT": str(root), "PYTHONUNBUFFERED": "1"}

    def argv(self, *args: str) -> list[str]:
        """The command line for ``carrier ARGS``."""
        return [sys.executable, "-m", "carrier", *args]

    def __call__(self, *args: str, timeout: float = 60, stdin: str | None = None,
                 prefix: list[str] | None = None) -> Result:
        """Run ``carrier ARGS`` to completion (through *prefix*, such as ``prlimit``)."""
        proc = subprocess.run(
            [*(prefix or []), *self.argv(*args)], env=self.env, capture_output=True, text=True,
            timeout=timeout,
            input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        """Start ``carrier ARGS`` without waiting."""
        return subprocess.Popen(self.argv(*args), env=self.env, text=True, **kw)  # type: ignore[call-overload, no-any-return]

    def record(self, name: str) -> dict[str, object]:
        """``carrier info NAME`` as a dict."""
        res = self("info", name)
        assert res.code == 0, res.err
        return json.loads(res.out)  # type: ignore[no-any-return]


def make_rootfs_tar(dest: Path, extra: dict[str, Path] | None = None) -> Path:
    """A busybox root filesystem as a plain tarball, made from the host's busybox-static, with
    *extra* programs added to /bin."""
    tree = dest / "rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
        (tree / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, tree / "bin" / "busybox")
    for name, path in (extra or {}).items():
        shutil.copy2(path, tree / "bin" / name)
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":
            (tree / "bin" / applet).symlink_to("busybox")
    (tree / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    )
    (tree / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\n")
    tar_path = dest / "busybox.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(tree, arcname=".")
    return tar_path


@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The busybox rootfs tarball, built once per session."""
    if not BUSYBOX.exists():
        pytest.fail("busybox-static is not installed (apt install busybox-static)")
    work = tmp_path_factory.mktemp("image")
    tools = {}
    for source in sorted((Path(__file__).parent / "tools").glob("*.c")):  # udpecho, tcpecho
        tools[source.stem] = work / source.stem
        try:
            subprocess.run(["gcc", "-static", "-O2", "-o", str(tools[source.stem]), str(source)],
                           check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            pytest.fail(f"cannot build the test image's {source.stem} ({e}): apt install gcc libc6-dev")
    return make_rootfs_tar(work, tools)


@pytest.fixture
def carrier_root(tmp_path: Path) -> Path:
    """A fresh, private Carrier root."""
    return tmp_path / "carrier-root"


@pytest.fixture
def carrier(carrier_root: Path) -> Iterator[Carrier]:
    """The CLI against a fresh root; afterwards, proves nothing leaked."""
    before = set(user_processes())
    cli = Carrier(carrier_root)
    yield cli
    leftover = still_alive({p: c for p, c in user_processes().items() if p not in before})
    if leftover:  # clean up first so one failure does not cascade, then fail
        cli("rm", "-f", *[d.name for d in (carrier_root / "containers").iterdir()])
    assert not leftover, f"processes left behind: {leftover}"
    runtime = carrier_root / "runtime"
    assert not runtime.exists() or not any(runtime.iterdir()), "runtime state left behind"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(carrier_root) not in mounts, "mounts left behind"


@pytest.fixture
def image(carrier: Carrier, rootfs_tar: Path) -> str:
    """The busybox image, imported into the fresh root."""
    res = carrier("import", str(rootfs_tar), "busybox")
    assert res.code == 0, res.err
    return "busybox"


@pytest.fixture
def cli(carrier: Carrier) -> Carrier:
    """The same as ``carrier``, for modules where that name is the library."""
    return carrier


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Root-only tests run only as root; every other test proves rootless behaviour, so it
    runs only as an unprivileged user (``scripts/test`` runs both phases)."""
    as_root = os.geteuid() == 0
    for item in items:
        if ("root" in item.keywords) != as_root:
            why = "needs root" if not as_root else "rootless: runs as the unprivileged test user"
            item.add_marker(pytest.mark.skip(reason=why))
