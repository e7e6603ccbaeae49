"""Per-container root filesystems: the container's own writable layer over the shared layers.

Three drivers, chosen automatically (the first that works here) or by ``--storage-driver``:

- ``overlay``: the kernel's overlayfs, mounted inside the holder's mount namespace (allowed in a
  user namespace since Linux 5.11, with ``userxattr``). The runtime joins that namespace.
- ``fuse-overlayfs``: the same, in user space, where the kernel refuses; it runs as a member of
  the container's group, so its death ends the group.
- ``copy``: a full copy of the layers, the last resort.

Nothing is mounted in the host's mount namespace: the mounts live and die with the holder, so a
crash cannot leak them. The container's writes land in ``<container>/upper`` (or in the copy),
never in the shared layers.
"""

from __future__ import annotations

import contextlib
import os
import platform
import select
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import anyio

from . import _process
from ._atomic import read_json, write_json
from ._errors import CarrierError, RuntimeFailure
from ._extract import remove_tree
from ._layers import OPAQUE_XATTR
from ._root import Root
from ._sandbox import Holder

DRIVERS = ("overlay", "fuse-overlayfs", "copy")


def _probe_dirs(base: Path) -> tuple[Path, str]:
    work = Path(tempfile.mkdtemp(prefix=".probe.", dir=base))
    for d in ("lower", "upper", "work", "merged"):
        (work / d).mkdir()
    (work / "lower" / "file").write_text("probe\n")
    return work, "lowerdir=lower,upperdir=upper,workdir=work"


def _probe(root: Root, driver: str) -> str | None:
    """Try *driver* for real in a throwaway user and mount namespace; ``None`` if it works,
    else why not."""
    if driver == "copy":
        return None
    if any(c in str(root.path) for c in ",:"):  # the separators of overlay's mount options
        return f"the Carrier root {root.path} contains ',' or ':'"
    if driver == "fuse-overlayfs":
        if shutil.which("fuse-overlayfs") is None:
            return "fuse-overlayfs is not installed (apt install fuse-overlayfs)"
        if not os.access("/dev/fuse", os.R_OK | os.W_OK):
            return "/dev/fuse is not readable and writable by this user"
    work, opts = _probe_dirs(root.tmp)
    mount = (f"mount -t overlay overlay -o userxattr,{opts} merged" if driver == "overlay"
             else f"fuse-overlayfs -o {opts} merged")
    script = f"{mount} && cat merged/file >/dev/null && umount merged"
    try:
        proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                              cwd=work, capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            return (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    finally:
        remove_tree(work)


def probe_all(root: Root) -> dict[str, str | None]:
    """Each driver and why it cannot be used here (``None``: usable). Cached per kernel."""
    cache = root.path / "storage.json"
    key = f"{platform.release()} uid={os.getuid()}"
    with contextlib.suppress(OSError, ValueError):
        data = read_json(cache)
        if data.get("key") == key:
            return {d: data["drivers"].get(d) for d in DRIVERS}
    found = {d: _probe(root, d) for d in DRIVERS}
    write_json(cache, {"key": key, "drivers": found})
    return found


def choose(root: Root, requested: str | None) -> str:
    """The driver for a new container: *requested* if it works here, else the first that does."""
    if requested not in (None, "", "auto") and requested not in DRIVERS:
        raise CarrierError(f"unknown storage driver {requested!r}: choose {', '.join(DRIVERS)}")
    found = probe_all(root)
    if requested in (None, "", "auto"):
        return next(d for d in DRIVERS if found[d] is None)
    assert requested is not None
    if (why := found[requested]) is not None:
        raise CarrierError(f"storage driver {requested} cannot be used here: {why}")
    return requested


def running_view(cdir: Path, driver: str, container_pid: int | None) -> Path:
    """Where this process sees a running container's root filesystem.

    A FUSE mount made in a user namespace admits only processes inside it, so for
    fuse-overlayfs Carrier reads and writes the container's own layer (``Rootfs.prepare``
    copies up the files it reads).
    """
    if driver == "fuse-overlayfs":
        return cdir / "upper"
    if driver == "copy" or container_pid is None:
        return cdir / "rootfs"
    return Path(f"/proc/{container_pid}/root")


class Rootfs:
    """One container's root filesystem for one run: prepared after the holder starts, released
    before it ends."""

    def __init__(self, driver: str, layers: tuple[Path, ...], cdir: Path) -> None:
        self.driver = driver
        self.layers = layers
        self.cdir = cdir
        self.mountpoint = cdir / "rootfs"
        self.fuse: _process.Child | None = None
        self._holder: Holder | None = None
        self._fuse_argv: list[str] = []
        self.pid_file = cdir / "storage.pid"

    @property
    def needs_mountns(self) -> bool:
        """Whether the holder needs a mount namespace of its own (where the mount lives)."""
        return self.driver != "copy"

    @property
    def runtime_inside(self) -> bool:
        """Whether the runtime itself must run inside the holder's user and mount namespaces.

        A FUSE mount made in a user namespace admits only processes inside that namespace, and
        runc cannot join the namespace holding it (its root comes up empty); run inside, runc
        clones the mount namespace, FUSE mount included, as Podman does.
        """
        return self.driver == "fuse-overlayfs"

    def view(self) -> Path:
        """Where this process sees the merged root filesystem (valid until the runtime starts)."""
        if self.driver == "fuse-overlayfs":
            return self.cdir / "upper"
        if self._holder is None:
            return self.mountpoint
        return Path(f"/proc/{self._holder.pid}/root") / str(self.mountpoint).lstrip("/")

    async def prepare(self, holder: Holder) -> None:
        """Make the merged root filesystem, in *holder*'s mount namespace where it needs one.

        **Cancellation:** a started fuse-overlayfs is killed before it propagates.
        """
        if self.driver == "copy":
            if not self.mountpoint.exists():
                await copy_layers(self.layers, self.mountpoint)
            return
        for d in ("upper", "work", "rootfs"):
            (self.cdir / d).mkdir(mode=0o755 if d == "upper" else 0o700, exist_ok=True)
        lower = ":".join(str(p) for p in reversed(self.layers))  # the top layer comes first
        opts = f"lowerdir={lower},upperdir={self.cdir / 'upper'},workdir={self.cdir / 'work'}"
        enter = holder.enter_argv()
        self._holder = holder
        if self.driver == "overlay":
            try:
                await _process.run([*enter, "mount", "-t", "overlay", "overlay",
                                    "-o", f"userxattr,{opts}", str(self.mountpoint)])
            except RuntimeError as e:
                raise RuntimeFailure(f"cannot mount the container's overlay: {e}") from None
            return
        # The parent-death signal ends it with a SIGKILLed supervisor at once; storage.pid lets
        # the next carrier command reap it even so.
        self._fuse_argv = ["setpriv", "--pdeathsig", "KILL", "--", *enter, "fuse-overlayfs", "-f",
                           "-o", opts, str(self.mountpoint)]
        etc = _top_entry(self.layers, "etc")
        if etc is not None and etc.is_symlink():  # as the other drivers refuse it (_network._etc)
            raise CarrierError("the image's /etc is a symlink: refusing to write through it")
        for rel in _READ_BEFORE_START:  # what Carrier reads through view(), copied up
            _copy_up(self.layers, self.cdir / "upper", rel)

    async def activate(self) -> None:
        """Mount fuse-overlayfs, after Carrier's own writes into the container's layer.

        **Cancellation:** a started fuse-overlayfs is killed before it propagates.
        """
        if self.driver != "fuse-overlayfs" or self._holder is None:
            return
        self.fuse = _process.spawn(self._fuse_argv, stderr=subprocess.DEVNULL)
        _process.write_pid_file(self.pid_file, self.fuse.pid)  # reaped by reconcile, after a crash
        try:
            await self._wait_mounted(self._holder)
        except BaseException:
            await self.release()
            raise

    async def _wait_mounted(self, holder: Holder) -> None:
        """Wait for the mount to appear in the holder's mount table: one poll on mountinfo (which
        signals every mount-table change) and on fuse-overlayfs's pidfd (which signals its exit)."""
        assert self.fuse is not None
        target = f" {self.mountpoint} ".encode()
        with open(f"/proc/{holder.pid}/mountinfo", "rb") as f:  # noqa: ASYNC230 - procfs
            poller = select.poll()
            poller.register(f, select.POLLPRI | select.POLLERR)
            poller.register(self.fuse.pidfd, select.POLLIN)
            with anyio.fail_after(10):
                while True:
                    f.seek(0)
                    if target in f.read():
                        return
                    ready = await anyio.to_thread.run_sync(poller.poll, abandon_on_cancel=True)
                    if any(fd == self.fuse.pidfd for fd, _ in ready):
                        raise RuntimeFailure("fuse-overlayfs exited before mounting the root filesystem")

    async def release(self) -> None:
        """Stop fuse-overlayfs, if it runs (overlay mounts end with the holder).
        **Cancellation:** shielded."""
        if self.fuse is not None:
            await self.fuse.kill()
            self.pid_file.unlink(missing_ok=True)
        self._holder = None


_READ_BEFORE_START = ("etc/passwd", "etc/group")


def _top_entry(layers: tuple[Path, ...], rel: str) -> Path | None:
    """The path *rel* as the merged tree shows it: the top-most layer's entry, or None where
    it is absent, deleted (a whiteout) or hidden by an opaque directory or a non-directory
    higher up. A path through a symlink counts as absent (the merged tree would follow it)."""
    parts = rel.split("/")
    for layer in reversed(layers):
        path, hidden = layer, False
        for i, part in enumerate(parts):
            path = path / part
            if not os.path.lexists(path):
                break
            st = os.lstat(path)
            if i == len(parts) - 1:
                return None if _is_whiteout(st) else path
            if not stat.S_ISDIR(st.st_mode):  # a whiteout, file or symlink hides what is below
                return None
            hidden = hidden or _opaque(str(path))
        if hidden:
            return None
    return None


def _copy_up(layers: tuple[Path, ...], upper: Path, rel: str) -> None:
    """Copy the regular file *rel* of the merged tree into *upper*, as overlay would on write."""
    target = upper / rel
    if os.path.lexists(target) or any(p.is_symlink() for p in target.parents if upper in p.parents):
        return
    source = _top_entry(layers, rel)
    if source is not None and stat.S_ISREG(os.lstat(source).st_mode):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


async def copy_layers(layers: tuple[Path, ...], dest: Path) -> None:
    """Apply the layers in order into a new directory *dest* (the ``copy`` driver).

    ``cp -a`` (reflinks where the filesystem has them) is an order of magnitude faster than
    ``shutil.copytree`` on many small files. Each later layer first removes what it deletes
    (whiteouts), empties its opaque directories, and clears every path it replaces (all but
    directories it merges into), so that ``cp`` never writes through a lower layer's symlink.
    """
    staging = dest.with_name(f".{dest.name}.copy")
    remove_tree(staging)
    try:
        for i, layer in enumerate(layers):
            if i > 0:
                await anyio.to_thread.run_sync(_clear_for, layer, staging)
            source = str(layer) if i == 0 else f"{layer}/."  # the first one creates the tree
            try:
                await _process.run(["cp", "-a", "--reflink=auto", source, str(staging)])
            except RuntimeError as e:
                raise CarrierError(f"cannot create the container's root filesystem: {e}") from None
            await anyio.to_thread.run_sync(_drop_whiteouts, staging)
        os.rename(staging, dest)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(remove_tree, staging)
        raise


def _is_whiteout(st: os.stat_result) -> bool:
    return (st.st_mode & 0o170000) == 0o020000 and st.st_rdev == 0


def _clear_for(layer: Path, tree: Path) -> None:
    """Make room in *tree* for *layer*: deletions, opaque directories and type changes."""
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = os.path.relpath(dirpath, layer)
        here = tree / rel if rel != "." else tree
        if rel != "." and _opaque(dirpath) and here.is_dir() and not here.is_symlink():
            remove_tree(here)
        for name in dirnames + filenames:
            src = os.path.join(dirpath, name)
            dst = here / name
            if not os.path.lexists(dst):
                continue
            src_is_dir = os.path.isdir(src) and not os.path.islink(src)
            dst_is_dir = dst.is_dir() and not dst.is_symlink()
            # Only two real directories merge; anything else is replaced, so that cp never
            # writes through a lower layer's symlink (etc/passwd -> /home/user/file).
            if _is_whiteout(os.lstat(src)) or not (src_is_dir and dst_is_dir):
                remove_tree(dst) if dst_is_dir else dst.unlink()


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _drop_whiteouts(tree: Path) -> None:
    """Remove whiteout devices and opaque markers that the copy brought along."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if _is_whiteout(os.lstat(path)):
                os.unlink(path)
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.removexattr(os.path.join(dirpath, name), OPAQUE_XATTR, follow_symlinks=False)
