"""Which storage driver a new container gets: each one tried for real in a throwaway user and
mount namespace (cached per kernel and user), the first that works, or the one asked for."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from .._util._atomic import read_json, write_json
from .._util._errors import CarrierError
from .._util._fs import remove_tree
from .._util._root import Root

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
