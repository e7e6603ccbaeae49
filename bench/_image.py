"""Benchmark images: the tests' busybox rootfs, optionally with host programs and their
shared libraries copied in (found with ldd)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import make_rootfs_tar


def with_programs(work: Path, programs: list[str]) -> Path:
    """A rootfs tarball holding busybox plus *programs* and every library they load."""
    extra = {Path(p).name: Path(shutil.which(p) or p) for p in programs}
    tar = make_rootfs_tar(work, extra)
    tree = work / "rootfs"
    for path in extra.values():
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for lib in re.findall(r"(/\S+\.so[.\d]*)", out):
            dest = tree / lib.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(lib).resolve(), dest)
    subprocess.run(["tar", "-C", str(tree), "-cf", str(tar), "."], check=True)
    return tar
