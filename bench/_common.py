"""Shared benchmark plumbing: the run context, summary statistics, interleaved runs and
bounded subprocess helpers, so every area measures and reports the same way."""

from __future__ import annotations

import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Context:
    """One suite run: where it works, how hard it tries, and what it found so far."""

    work: Path
    quick: bool
    runs: int
    env: dict[str, str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # role -> carrier image name
    tarballs: dict[str, Path] = field(default_factory=dict)  # role -> rootfs tarball
    large_mb: int = 0

    @property
    def root(self) -> Path:
        """The private Carrier root of this run."""
        return self.work / "root"

    def carrier(self, *args: str, timeout: float = 120, check: bool = True,
                **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run the Carrier CLI of this interpreter against the private root."""
        return subprocess.run([sys.executable, "-m", "carrier", *args], env=self.env, text=True,
                              capture_output=True, check=check, timeout=timeout, **kw)


def baseline_python() -> str | None:
    """``$CARRIER_BENCH_BASELINE``: the interpreter of another Carrier install (an earlier
    build), measured side by side with this one in the same run; run it with ``cwd="/"`` so
    that ``-m carrier`` cannot pick up this checkout."""
    return os.environ.get("CARRIER_BENCH_BASELINE") or None


def stats(values: list[float]) -> dict[str, float]:
    """Median, p95 (nearest rank), min, max and count of *values*."""
    if not values:
        return {"n": 0}
    s = sorted(values)
    p95 = s[max(0, math.ceil(0.95 * len(s)) - 1)]
    return {"median": statistics.median(s), "p95": p95, "min": s[0], "max": s[-1], "n": len(s)}


def interleave(variants: Mapping[str, Callable[[], dict[str, float] | float]], runs: int,
               ) -> dict[str, Any]:
    """Run each variant once per round (A B A B ...) and summarise each metric per variant.

    A variant returns one number or a dict of named numbers; a variant that raises is recorded
    as ``unavailable: <reason>`` and not tried again."""
    samples: dict[str, dict[str, list[float]]] = {k: {} for k in variants}
    failed: dict[str, str] = {}
    for _ in range(runs):
        for name, fn in variants.items():
            if name in failed:
                continue
            try:
                got = fn()
            except Exception as e:  # a peer missing or broken is a result, not a crash
                failed[name] = f"unavailable: {one_line(e)}"
                continue
            for metric, v in (got if isinstance(got, dict) else {"wall": got}).items():
                samples[name].setdefault(metric, []).append(v)
    out: dict[str, Any] = {}
    for name in variants:
        out[name] = failed.get(name) or {m: stats(v) for m, v in samples[name].items()}
    return out


def one_line(e: BaseException) -> str:
    """An exception as one short line (a failed command's stderr tail included)."""
    while isinstance(e, BaseExceptionGroup) and e.exceptions:
        e = e.exceptions[0]  # the first leaf says what went wrong
    text = f"{type(e).__name__}: {e}" if not isinstance(e, subprocess.SubprocessError) else str(e)
    if isinstance(e, subprocess.CalledProcessError):
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        text += ": " + (err.strip().splitlines() or [""])[-1]
    return " ".join(text.split())[:300]


def ms_since(start: float) -> float:
    """Milliseconds since a ``time.perf_counter()`` reading."""
    return (time.perf_counter() - start) * 1000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    """Wait (bounded) until something accepts TCP connections on *host*:*port*."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.01)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.002) -> None:
    """Poll *predicate* until true, at most *timeout* seconds (bench only: nothing to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not after {timeout} s")
        time.sleep(step)


def version(argv: list[str]) -> str:
    """The first line a tool prints about its version, or why there is none."""
    if not shutil.which(argv[0]):
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable: {one_line(e)}"
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if "syslog" not in ln]
    return lines[0].strip() if lines else "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kib = 0
    return {
        "kernel": os.uname().release, "machine": os.uname().machine, "cpus": os.cpu_count(),
        "cpu_model": model, "memory_gib": round(mem_kib / 2**20, 1),
        "python": sys.version.split()[0], "user": os.getuid(),
        "runc": version(["runc", "--version"]), "pasta": version(["pasta", "--version"]),
        "slirp4netns": version(["slirp4netns", "--version"]),
        "podman": version(["podman", "--version"]), "iperf3": version(["iperf3", "--version"]),
        "fuse-overlayfs": version(["fuse-overlayfs", "--version"]),
    }


def free_memory_mib() -> int:
    """MemAvailable in MiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0
