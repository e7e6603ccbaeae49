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

import select
import subprocess
from pathlib import Path

import anyio

from .._sandbox._holder import Holder
from .._util import _process
from .._util._errors import CarrierError, RuntimeFailure
from ._copy import copy_layers, copy_up, top_entry


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
        etc = top_entry(self.layers, "etc")
        if etc is not None and etc.is_symlink():  # as the other drivers refuse it (_network._etc)
            raise CarrierError("the image's /etc is a symlink: refusing to write through it")
        for rel in _READ_BEFORE_START:  # what Carrier reads through view(), copied up
            copy_up(self.layers, self.cdir / "upper", rel)

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
