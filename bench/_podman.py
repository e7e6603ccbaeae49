"""Podman as the peer, rootless with storage private to one benchmark run (its own --root,
--runroot, HOME and XDG dirs under the run's temp dir), removed again by ``close``.

Set up as a user who cares about its speed would set it up here: runc (crun fails on this
host's hybrid cgroups), the cgroupfs manager, file events, and native overlay storage (its
rootless default on Debian 12 is vfs, which copies the whole rootfs at each start and would
flatter Carrier)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from bench._common import one_line


class Podman:
    """``podman --runtime runc`` against a throwaway store; ``unavailable`` says why not."""

    def __init__(self, work: Path) -> None:
        self.dir = work / "podman"
        self.unavailable: str | None = None
        self.env = {**os.environ, "HOME": str(self.dir / "home"),
                    "XDG_RUNTIME_DIR": str(self.dir / "run"),
                    "XDG_CONFIG_HOME": str(self.dir / "config"), "XDG_DATA_HOME": str(self.dir / "data")}
        if not shutil.which("podman"):
            self.unavailable = "unavailable: podman is not installed"
            return
        for d in ("home", "run", "config", "data"):
            (self.dir / d).mkdir(parents=True, exist_ok=True, mode=0o700)

    TUNING = ("--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc",
              "--storage-driver", "overlay")

    def argv(self, *args: str) -> list[str]:
        """A podman command line bound to the private store, tuned (see the module's doc)."""
        return ["podman", "--root", str(self.dir / "storage"), "--runroot", str(self.dir / "runroot"),
                *self.TUNING, *args]

    def config(self) -> dict[str, str]:
        """How this Podman is set up, for the results: its flags and the storage driver it uses."""
        out = {"flags": " ".join(self.TUNING)}
        if self.unavailable is None:
            try:
                got = self.run("info", "--format", "{{.Store.GraphDriverName}}", timeout=60)
                out["storage_driver"] = got.stdout.strip()
            except (OSError, subprocess.SubprocessError) as e:
                out["storage_driver"] = f"unknown: {one_line(e)}"
        return out

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run podman with *args*."""
        return subprocess.run(self.argv(*args), env=self.env, text=True, capture_output=True,
                              timeout=timeout, check=check)

    def import_image(self, tarball: Path, name: str) -> None:
        """``podman import`` the rootfs tarball, then prove it runs; else record why not."""
        if self.unavailable:
            return
        try:
            self.run("import", str(tarball), f"localhost/{name}")
            self.run("run", "--rm", "--network", "slirp4netns", f"localhost/{name}", "true")
        except (OSError, subprocess.SubprocessError) as e:
            self.unavailable = f"unavailable: {one_line(e)}"

    def close(self) -> None:
        """Remove the store and end Podman's pause process (``system reset``)."""
        if not self.dir.exists():
            return
        if shutil.which("podman"):
            try:
                pause = int((self.dir / "run" / "libpod" / "tmp" / "pause.pid").read_text())
            except (OSError, ValueError):
                pause = 0
            with contextlib.suppress(subprocess.SubprocessError):
                self.run("system", "reset", "--force", timeout=120, check=False)
            if pause > 0:
                with contextlib.suppress(OSError):
                    os.kill(pause, 15)  # our own pause process, if reset left it
            for pid in _ours(self.dir):  # the rootless netns's slirp4netns, which reset can leave
                with contextlib.suppress(OSError):
                    os.kill(pid, 15)
        shutil.rmtree(self.dir, ignore_errors=True)


def _ours(directory: Path) -> list[int]:
    """This user's processes whose command line names *directory* (this run's Podman store)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == os.getuid() and \
                    str(directory).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]
