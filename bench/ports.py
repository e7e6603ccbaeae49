"""Published ports under load: redis-benchmark with 50 clients against a real redis-server in
a Debian image, through ``-p`` on host 127.0.0.1, all variants interleaved in one run.

- carrier pasta / carrier slirp4netns: Carrier's TCP forwarder (``_tcprelay``) with each helper;
- hand pasta -t / hand slirp4netns add_hostfwd: the helpers' own forwarders, driven by
  bench/floor.sh with the same image (what Carrier used before);
- podman slirp4netns: Podman 4.3 with its rootlessport forwarder, tuned (bench/_podman.py).

A run that does not finish within its bound counts as hung (redis-benchmark waits for ever on
a connection that stalls), one that redis-benchmark gives up (a connection reset) as failed;
both are recorded as such rather than as a rate.

The image is built by scripts/setup (``mmdebstrap --variant=minbase``, redis-server inside) at
``<prefix>/images/debian.tar``; ``$CARRIER_BENCH_DEBIAN`` names another."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import Context, free_port, interleave
from bench._podman import Podman
from bench.start import FLOOR, carrier_cli, floor_template

CLIENTS = 50
SERVER = ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "",
          "--appendonly", "no", "--port", "6379"]
TESTS = ("SET", "GET")


def debian_image() -> Path | None:
    """The Debian image with redis-server, if scripts/setup built one (or the environment
    names one)."""
    named = os.environ.get("CARRIER_BENCH_DEBIAN")
    path = Path(named) if named else Path(sys.prefix).parent / "images" / "debian.tar"
    return path if path.is_file() else None


def _redis_ready(port: int, bound: float = 30) -> None:
    """Wait (bounded) until a PING through the published port gets its PONG."""
    deadline = time.monotonic() + bound
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis did not answer on port {port} within {bound} s")
        time.sleep(0.02)  # bench only: nothing announces the server inside


def _benchmark(port: int, requests: int, bound: float) -> dict[str, float]:
    """requests/s per test; ``hung`` if redis-benchmark did not finish within *bound*, ``failed``
    if it gave up (a connection reset: it stops at the first)."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CLIENTS),
            "-n", str(requests), "-t", ",".join(t.lower() for t in TESTS), "--csv"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=bound, check=True)
    except subprocess.TimeoutExpired:
        return {"hung": 1.0}
    except subprocess.CalledProcessError:
        return {"failed": 1.0}
    rates = {m[1].lower(): float(m[2]) for m in re.finditer(r'^"(\w+)","([\d.]+)"', out.stdout, re.M)}
    if set(rates) != {t.lower() for t in TESTS}:
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout[-300:]!r}")
    return {f"{t}_rps": r for t, r in rates.items()}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of *pid* so far."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(ctx: Context) -> dict[str, Any]:
    """Each variant started, benchmarked and removed once per round, interleaved."""
    tarball = ctx.tarballs.get("debian")
    if tarball is None:
        return {"error": "no Debian image: scripts/setup builds it at <prefix>/images/debian.tar"}
    requests = 20_000 if ctx.quick else 200_000
    bound = 60.0 if ctx.quick else 120.0
    rounds = 1 if ctx.quick else min(ctx.runs, 5)
    cli, env, image = carrier_cli(), ctx.env, ctx.images["debian"]
    template = floor_template(ctx.work, tarball, SERVER)
    podman = Podman(ctx.work)
    podman.import_image(tarball, "debian")

    def carrier(helper: str) -> Any:
        def once() -> dict[str, float]:
            port, name = free_port(), f"ports-{helper}"
            subprocess.run([*cli, "run", "-d", "--name", name, "--network", helper, "-p",
                            f"127.0.0.1:{port}:6379", image, *SERVER], env=env, check=True,
                           capture_output=True, timeout=120)
            try:
                info = subprocess.run([*cli, "info", name], env=env, check=True, capture_output=True,
                                      text=True, timeout=60).stdout
                forwarder = int(json.loads(info)["network"]["forwarder_pid"])
                _redis_ready(port)
                cpu = _cpu_seconds(forwarder)
                got = _benchmark(port, requests, bound)
                if "hung" not in got:  # the forwarder's CPU per request, both directions
                    got["forwarder_us_per_request"] = (
                        (_cpu_seconds(forwarder) - cpu) / (requests * len(TESTS)) * 1e6)
                return got
            finally:
                subprocess.run([*cli, "rm", "-f", name], env=env, capture_output=True, timeout=120)
        return once

    def hand(helper: str) -> Any:
        def once() -> dict[str, float]:
            port = free_port()
            proc = subprocess.Popen(["bash", str(FLOOR), str(template), helper],
                                    env={**env, "FLOOR_PUBLISH": f"{port}:6379",
                                         "FLOOR_PYTHON": sys.executable},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                _redis_ready(port)
                return _benchmark(port, requests, bound)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        return once

    def podman_once() -> dict[str, float]:
        port = free_port()
        podman.run("run", "-d", "--name", "ports", "--network", "slirp4netns", "-p",
                   f"127.0.0.1:{port}:6379", "localhost/debian", *SERVER)
        try:
            _redis_ready(port)
            return _benchmark(port, requests, bound)
        finally:
            podman.run("rm", "-f", "-t", "0", "ports", check=False)

    variants: dict[str, Any] = {
        "carrier pasta": carrier("pasta"),
        "hand pasta -t": hand("pasta"),
        "carrier slirp4netns": carrier("slirp4netns"),
        "hand slirp4netns add_hostfwd": hand("slirp4netns"),
    }
    if podman.unavailable is None:
        variants["podman slirp4netns"] = podman_once
    try:
        got = interleave(variants, rounds)
        podman_config = podman.config()
    finally:
        podman.close()
    if podman.unavailable is not None:
        got["podman slirp4netns"] = podman.unavailable
    return {"clients": CLIENTS, "requests": requests, "rounds": rounds, "bound_s": bound,
            "podman": podman_config, "variants": got, "ratios": ratios(got)}


def _median(v: Any, metric: str) -> float | None:
    return v[metric]["median"] if isinstance(v, dict) and metric in v else None


def ratios(variants: dict[str, Any]) -> dict[str, float]:
    """Request rates as ratios of medians: Carrier with each helper against pasta's own
    forwarder (the target: slirp4netns within 10 %), against each other and against Podman."""
    out: dict[str, float] = {}
    pairs = [("carrier slirp4netns", "hand pasta -t"), ("carrier pasta", "hand pasta -t"),
             ("carrier slirp4netns", "carrier pasta"), ("carrier slirp4netns", "podman slirp4netns"),
             ("carrier pasta", "podman slirp4netns")]
    for a, b in pairs:
        for test in TESTS:
            metric = f"{test.lower()}_rps"
            x, y = _median(variants.get(a), metric), _median(variants.get(b), metric)
            if x is not None and y:
                out[f"{a} / {b} ({test})"] = x / y
    return out
