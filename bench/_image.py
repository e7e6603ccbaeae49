"""Benchmark images: the tests' busybox rootfs plus ``stamp`` (prints CLOCK_MONOTONIC, so a run
tells when its command started), optionally host programs with their shared libraries (ldd),
and a large variant with about 200 MB of random files for the storage drivers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import make_rootfs_tar

_STAMP_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    printf("%lld\n", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
    return 0;
}
"""


def stamp_binary(work: Path) -> Path:
    """A static program that prints the monotonic clock in ns (the same clock as the host's:
    there is no time namespace), used as the benchmark's `true` that says when it ran."""
    out = work / "stamp"
    if not out.exists():
        src = work / "stamp.c"
        src.write_text(_STAMP_C)
        subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(src)], check=True)
    return out


def _libraries(program: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(program)], capture_output=True, text=True).stdout
    return [Path(lib) for lib in re.findall(r"(/\S+\.so[.\d]*)", out)]


def busybox(work: Path, programs: tuple[str, ...] = ()) -> Path:
    """A rootfs tarball: busybox, ``stamp``, plus *programs* (host paths or names on PATH) and
    every library they load."""
    base = work / "busybox"
    base.mkdir(parents=True, exist_ok=True)
    extra = {"stamp": stamp_binary(work)}
    extra |= {Path(p).name: Path(shutil.which(p) or p) for p in programs}
    tar = make_rootfs_tar(base, extra)
    if programs:
        tree = base / "rootfs"
        for path in extra.values():
            for lib in _libraries(path):
                dest = tree / str(lib).lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(lib.resolve(), dest)
        subprocess.run(["tar", "-C", str(tree), "-cf", str(tar), "."], check=True)
    return tar


def large(work: Path, small_tar: Path, megabytes: int, files: int = 300) -> Path:
    """*small_tar* plus *megabytes* MB of random content spread over *files* files in /data."""
    out = work / f"large-{megabytes}mb.tar"
    shutil.copy2(small_tar, out)
    data = work / "large-data"
    per_file = megabytes * 1_000_000 // files
    data.mkdir(exist_ok=True)
    with tarfile.open(out, "a") as tar:
        tar.add(data, arcname="./data", recursive=False)
        for i in range(files):
            sub = data / f"d{i // 50:02d}"
            if not sub.exists():
                sub.mkdir()
                tar.add(sub, arcname=f"./data/{sub.name}", recursive=False)
            path = sub / f"f{i:04d}.bin"
            path.write_bytes(os.urandom(per_file))
            tar.add(path, arcname=f"./data/{sub.name}/{path.name}")
            path.unlink()
    return out
