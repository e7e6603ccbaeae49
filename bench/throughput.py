"""TCP throughput with iperf3, all on this machine: container -> host loopback and host ->
container through a published port, for Carrier with pasta and slirp4netns, for the same helper
driven by hand (bench/floor.sh, also at MTU 1500), for Podman with slirp4netns, and host
loopback alone as the ceiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import Context, free_port, interleave
from bench._podman import Podman
from bench.start import FLOOR, carrier_cli, floor_template

# Inside the container: connect to the default gateway, which the helper maps to host loopback.
_TO_GATEWAY = "exec iperf3 -J -c $(ip route | awk '/^default/ {print $3}') -p @PORT@ -t @SECS@"


def _to_gateway(port: int | str, secs: int) -> str:
    return _TO_GATEWAY.replace("@PORT@", str(port)).replace("@SECS@", str(secs))


def _rate(json_text: str) -> float:
    return float(json.loads(json_text)["end"]["sum_received"]["bits_per_second"]) / 1e9


def _client(port: int, secs: int) -> float:
    out = subprocess.run(["iperf3", "-J", "-c", "127.0.0.1", "-p", str(port), "-t", str(secs)],
                         capture_output=True, text=True, check=True, timeout=secs + 30)
    return _rate(out.stdout)


def to_host(argv: list[str], env: dict[str, str], port: int, secs: int) -> float:
    """Gbit/s of *argv* (an iperf3 client in a container) against a server on host loopback."""
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _port_bound(port) and time.monotonic() < deadline:
            time.sleep(0.01)
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True,
                             timeout=secs + 60)
        return _rate(out.stdout[out.stdout.index("{"):])
    finally:
        server.kill()
        server.wait(timeout=10)


def _port_bound(port: int, proc: str = "self") -> bool:
    """Whether a TCP socket listens on *port* in *proc*'s network namespace (read from /proc,
    so no connection is made that would use up iperf3's one test)."""
    for table in ("tcp", "tcp6"):  # iperf3 -s listens on :: (dual stack)
        try:
            with open(f"/proc/{proc}/net/{table}") as f:
                if any(ln.split()[1].endswith(f":{port:04X}") and ln.split()[3] == "0A"
                       for ln in list(f)[1:]):
                    return True
        except OSError:
            pass
    return False


def _listening_in_container(port: int) -> bool:
    """Whether an ``iperf3`` in another network namespace than ours listens on *port* (the
    server's output is block-buffered in a pipe, so it cannot say so itself)."""
    own = os.readlink("/proc/self/ns/net")
    for entry in os.listdir("/proc"):
        try:
            if (not entry.isdigit() or Path(f"/proc/{entry}/comm").read_text().strip() != "iperf3"
                    or os.readlink(f"/proc/{entry}/ns/net") == own):
                continue
        except OSError:
            continue
        if _port_bound(port, entry):
            return True
    return False


def from_host(argv: list[str], env: dict[str, str], port: int, secs: int) -> float:
    """Gbit/s from a host client to *argv* (``iperf3 -s -1 -p PORT`` in a container, published
    on 127.0.0.1:PORT), once the server listens inside."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not _listening_in_container(port):
            if proc.poll() is not None:
                raise RuntimeError(f"the container exited with {proc.returncode} before listening")
            if time.monotonic() > deadline:
                raise TimeoutError("the container's iperf3 server did not listen in 30 s")
            time.sleep(0.01)
        rate = _client(port, secs)
        proc.wait(timeout=30)
        return rate
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def run(ctx: Context) -> dict[str, Any]:
    """Every path as one variant, interleaved; rates, fractions of the ceiling and ratios."""
    secs = 1 if ctx.quick else 2
    rounds = 1 if ctx.quick else min(ctx.runs, 5)
    env, image, tar = ctx.env, ctx.images["net"], ctx.tarballs["net"]
    cli = carrier_cli()

    def server(p: int) -> list[str]:
        return ["iperf3", "-s", "-1", "-p", str(p)]
    podman = Podman(ctx.work)
    podman.import_image(tar, "net")
    variants: dict[str, Any] = {}

    def port() -> int:
        return free_port()

    variants["host loopback (ceiling)"] = lambda: to_host(
        ["iperf3", "-J", "-c", "127.0.0.1", "-p", str(p := port()), "-t", str(secs)], env, p, secs)
    for helper in ("pasta", "slirp4netns"):
        for mtu in (65520, 1500):
            net = ["--network", helper, "--mtu", str(mtu)]

            def c2h(net: list[str] = net) -> float:
                p = port()
                return to_host([*cli, "run", "--rm", *net, "--host-loopback", image, "sh", "-c",
                                _to_gateway(p, secs)], env, p, secs)

            def h2c(net: list[str] = net) -> float:
                p = port()
                return from_host([*cli, "run", "--rm", *net, "-p", f"127.0.0.1:{p}:{p}", image,
                                  *server(p)], env, p, secs)

            variants[f"carrier {helper} mtu {mtu} c->h"] = c2h
            variants[f"carrier {helper} mtu {mtu} h->c"] = h2c
            variants[f"hand {helper} mtu {mtu} c->h"] = _hand(ctx, helper, mtu, "c2h", secs)
            variants[f"hand {helper} mtu {mtu} h->c"] = _hand(ctx, helper, mtu, "h2c", secs)
    if podman.unavailable is None:
        def pc2h() -> float:
            p = port()
            return to_host(podman.argv("run", "--rm", "--network", "slirp4netns:allow_host_loopback=true",
                                       "localhost/net", "sh", "-c", _to_gateway(p, secs)),
                           podman.env, p, secs)

        def ph2c() -> float:
            p = port()
            return from_host(podman.argv("run", "--rm", "--network", "slirp4netns", "-p",
                                         f"127.0.0.1:{p}:{p}", "localhost/net", *server(p)),
                             podman.env, p, secs)

        variants["podman slirp4netns c->h"] = pc2h
        variants["podman slirp4netns h->c"] = ph2c
    try:
        got = interleave(variants, rounds)
    finally:
        podman.close()
    if podman.unavailable is not None:
        got["podman slirp4netns c->h"] = got["podman slirp4netns h->c"] = podman.unavailable
    rates = {k: (v if isinstance(v, str) else v["wall"]) for k, v in got.items()}
    return {"iperf_seconds": secs, "rounds": rounds, "gbit_s": rates, "ratios": ratios(rates)}


def _hand(ctx: Context, helper: str, mtu: int, direction: str, secs: int) -> Any:
    """The same helper driven by floor.sh, with the iperf3 client or server as the command."""
    tar = ctx.tarballs["net"]
    if direction == "c2h":
        template = floor_template(ctx.work, tar, ["sh", "-c", _to_gateway("@PORT@", secs)])
    else:
        template = floor_template(ctx.work, tar, ["iperf3", "-s", "-1", "-p", "@PORT@"])
    text = template.read_text()

    def once() -> float:
        p = free_port()
        per_run = ctx.work / f"hand-{os.getpid()}-{p}.json"
        per_run.write_text(text.replace("@PORT@", str(p)))
        env = {**ctx.env, "FLOOR_MTU": str(mtu), "FLOOR_PYTHON": sys.executable}
        try:
            argv = ["bash", str(FLOOR), str(per_run), helper]
            if direction == "c2h":
                return to_host(argv, {**env, "FLOOR_HOST_LOOPBACK": "1"}, p, secs)
            return from_host(argv, {**env, "FLOOR_PUBLISH": f"{p}:{p}"}, p, secs)
        finally:
            per_run.unlink(missing_ok=True)

    return once


def _median(v: Any) -> float | None:
    return v["median"] if isinstance(v, dict) else None


def ratios(rates: dict[str, Any]) -> dict[str, float]:
    """Fractions of the ceiling, Carrier ÷ by hand, Carrier+pasta ÷ Podman+slirp4netns."""
    out: dict[str, float] = {}
    ceiling = _median(rates.get("host loopback (ceiling)"))
    for k, v in rates.items():
        m = _median(v)
        if ceiling and m is not None and k != "host loopback (ceiling)":
            out[f"{k} / ceiling"] = m / ceiling
    for helper in ("pasta", "slirp4netns"):
        for mtu in (65520, 1500):
            for d in ("c->h", "h->c"):
                a = _median(rates.get(f"carrier {helper} mtu {mtu} {d}"))
                b = _median(rates.get(f"hand {helper} mtu {mtu} {d}"))
                if a is not None and b:
                    out[f"carrier {helper} mtu {mtu} {d} / hand"] = a / b
    for d in ("c->h", "h->c"):
        a = _median(rates.get(f"carrier pasta mtu 65520 {d}"))
        b = _median(rates.get(f"podman slirp4netns {d}"))
        if a is not None and b:
            out[f"carrier pasta {d} / podman slirp4netns"] = a / b
    return out

