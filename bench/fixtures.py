"""Test fixtures: the time from ``async with carrier.run(...)`` to a server that answers through
its published port on host 127.0.0.1, and the time for 20 such fixtures in parallel, side by
side with what a test suite does with Podman (``podman run -d -p`` + a readiness poll, then
``podman rm -f``).

Servers: busybox httpd (``ready`` = an HTTP answer) and, when scripts/setup built the Debian
image, redis-server (``ready`` = PONG to a PING). Carrier runs in this process, as a test
suite runs it, with ``wait_for=carrier.port(...)`` and ``init=True`` (the fixture stops at
once), then the same host-side poll as Podman's, which must pass at the first try or soon
after. Podman is tuned (bench/_podman.py), with ``--init`` and ``rm -f -t 0``.

Metrics per variant: ``ready`` (ms from the start to the first good answer) and ``cycle`` (ms
from the start until the fixture is torn down and everything of it is gone); for the parallel
run the same for all N together."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio

import carrier
from bench._common import Context, free_port, interleave, ms_since
from bench._podman import Podman
from bench.ports import SERVER as REDIS

PARALLEL = 20
HTTPD = ["httpd", "-f", "-p", "80", "-h", "/"]
BOUND = 30.0  # seconds: a server that does not answer by then fails the run


def _answers(port: int, ask: bytes, expect: bytes) -> bool:
    """Whether the server on 127.0.0.1:*port* answers *ask* with something starting *expect*."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(ask)
            return s.recv(16).startswith(expect)
    except OSError:
        return False


def _poll(port: int, ask: bytes, expect: bytes) -> None:
    """Poll (bounded; bench only: nothing announces a server on the host side) until it answers."""
    deadline = time.monotonic() + BOUND
    while not _answers(port, ask, expect):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer on 127.0.0.1:{port} within {BOUND} s")
        time.sleep(0.005)


SERVERS: dict[str, tuple[list[str], int, bytes, bytes]] = {
    "httpd": (HTTPD, 80, b"GET / HTTP/1.0\r\n\r\n", b"HTTP/1."),
    "redis": (REDIS, 6379, b"PING\r\n", b"+PONG"),
}


async def _carrier_fixtures(image: str, server: str, helper: str, n: int) -> dict[str, float]:
    """*n* fixtures at once: each ``async with carrier.run`` until its server answers on the
    host; ``ready`` when the last one answers, ``cycle`` when all are torn down."""
    argv, cport, ask, expect = SERVERS[server]
    start = time.perf_counter()
    ready = 0.0
    answered = 0
    all_ready = anyio.Event()
    release = anyio.Event()

    async def fixture() -> None:
        nonlocal ready, answered
        async with carrier.run(image, argv, ports={cport: "127.0.0.1:0"}, network=helper,  # type: ignore[arg-type]
                               init=True, wait_for=carrier.port(cport), wait_timeout=BOUND) as c:
            _, port = c.published(cport)
            await anyio.to_thread.run_sync(_poll, port, ask, expect)
            answered += 1
            if answered == n:
                ready = ms_since(start)
                all_ready.set()
            await release.wait()

    with anyio.fail_after(BOUND * 2):
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(fixture)
            await all_ready.wait()
            release.set()
    return {"ready": ready, "cycle": ms_since(start)}


def _podman_fixtures(podman: Podman, image: str, server: str, n: int) -> dict[str, float]:
    """*n* ``podman run -d`` at once, each polled until it answers; then ``rm -f`` of all."""
    argv, cport, ask, expect = SERVERS[server]
    names = [f"fx-{server}-{i}" for i in range(n)]
    lock = threading.Lock()
    ready = [0.0]
    start = time.perf_counter()

    def one(name: str) -> None:
        port = free_port()
        podman.run("run", "-d", "--init", "--name", name, "--network", "slirp4netns", "-p",
                   f"127.0.0.1:{port}:{cport}", f"localhost/{image}", *argv)
        _poll(port, ask, expect)
        with lock:
            ready[0] = ms_since(start)

    try:
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(one, names))
    finally:
        podman.run("rm", "-f", "-t", "0", *names, check=False)
    return {"ready": ready[0], "cycle": ms_since(start)}


def run(ctx: Context) -> dict[str, Any]:
    """Each variant once per round, interleaved: one fixture, then PARALLEL at once."""
    parallel = 3 if ctx.quick else PARALLEL
    rounds = 1 if ctx.quick else ctx.runs
    images = {"httpd": ctx.images["small"]}
    if "debian" in ctx.images and not ctx.quick:
        images["redis"] = ctx.images["debian"]
    podman = Podman(ctx.work)
    podman.import_image(ctx.tarballs["small"], "small")
    if "redis" in images:
        podman.import_image(ctx.tarballs["debian"], "debian")
    helpers = ["pasta"] if ctx.quick else ["pasta", "slirp4netns"]

    def with_carrier(server: str, helper: str, n: int) -> Callable[[], dict[str, float]]:
        return lambda: anyio.run(_carrier_fixtures, images[server], server, helper, n)

    def with_podman(server: str, n: int) -> Callable[[], dict[str, float]]:
        image = "small" if server == "httpd" else "debian"
        return lambda: _podman_fixtures(podman, image, server, n)

    results: dict[str, Any] = {"n_parallel": parallel, "rounds": rounds,
                               "servers": sorted(images), "podman": {}}
    try:
        for label, n in (("one", 1), ("parallel", parallel)):
            variants: dict[str, Callable[[], dict[str, float]]] = {}
            for server in images:
                for helper in helpers:
                    variants[f"carrier {helper} {server}"] = with_carrier(server, helper, n)
                if podman.unavailable is None:
                    variants[f"podman slirp4netns {server}"] = with_podman(server, n)
            results[label] = interleave(variants, rounds)
            if podman.unavailable is not None:
                for server in images:
                    results[label][f"podman slirp4netns {server}"] = podman.unavailable
        results["podman"] = podman.config()
    finally:
        podman.close()
    results["ratios"] = ratios(results, images, helpers)
    return results


def _median(v: Any, metric: str) -> float | None:
    return v[metric]["median"] if isinstance(v, dict) and metric in v else None


def ratios(results: dict[str, Any], servers: Any, helpers: list[str]) -> dict[str, float]:
    """Carrier against Podman, as ratios of medians (below 1: Carrier is faster)."""
    out: dict[str, float] = {}
    for label in ("one", "parallel"):
        for server in servers:
            for helper in helpers:
                for metric in ("ready", "cycle"):
                    x = _median(results[label].get(f"carrier {helper} {server}"), metric)
                    y = _median(results[label].get(f"podman slirp4netns {server}"), metric)
                    if x is not None and y:
                        out[f"{label} {server} {metric}: carrier {helper} / podman"] = x / y
    return out
