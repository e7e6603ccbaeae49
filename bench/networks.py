"""Container-to-container networking on one network, Carrier (``carrier network create``, a
bridge in the network's own namespace, one veth per container) side by side with rootless
Podman on a ``podman network create`` network (CNI bridge in its rootless netns), tuned as
bench/_podman.py tunes it. Both networks are ``--internal``: no helper, no way out, traffic
stays between the containers.

- **throughput**: iperf3 (the host's, with its libraries, in the bench's busybox image) from a
  client container to a server container on the same network, Gbit/s;
- **latency**: ``netprobe rr`` (bench/netprobe.c, built static here) from a client container:
  N short TCP connections to a server container (connect, one byte each way, close), bounded in
  count and time; the median and p95 per run in µs;
- **tree**: 10 services coming up on an ``--internal`` network. Carrier: ``carrier up`` of a
  tree of 10 (its ``nb_default`` made up front, as the tree labels it), each running
  ``netprobe resolve`` until every other service's name resolves; Podman: 10 x ``podman run -d``
  on one network, one after the other (as podman-compose does; it is not installed). ``up`` is
  when the last service's command started, ``resolved`` when the last one resolved every other.
  Debian 12's Podman 4.3 has no CNI ``dnsname`` plugin (no package ships it), so its containers
  cannot resolve each other's names at all: Podman has ``up`` only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import Context, interleave, wait_for
from bench._image import busybox
from bench._podman import Podman
from bench.start import carrier_cli

IPERF_PORT = 5201
RR_PORT = 7000
SERVICES = 10
BOUND = 60.0  # seconds: any one step that takes longer fails the run


def netprobe(work: Path) -> Path:
    """bench/netprobe.c built static (serve, rr and resolve; see its usage line)."""
    out = work / "netprobe"
    if not out.exists():
        subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(Path(__file__).with_name("netprobe.c"))],
                       check=True, capture_output=True)
    return out


def _listeners(port: int) -> set[str]:
    """The network namespaces (other than ours) where an ``iperf3`` or ``netprobe`` of this user
    listens on *port* (read from /proc: a probe connection would use up a server's test)."""
    own = os.readlink("/proc/self/ns/net")
    found = set()
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or Path(f"/proc/{entry}/comm").read_text().strip() not in (
                    "iperf3", "netprobe"):
                continue
            ns = os.readlink(f"/proc/{entry}/ns/net")
            if ns == own:
                continue
            with open(f"/proc/{entry}/net/tcp") as f, open(f"/proc/{entry}/net/tcp6") as g:
                lines = list(f)[1:] + list(g)[1:]
        except OSError:
            continue
        if any(ln.split()[1].endswith(f":{port:04X}") and ln.split()[3] == "0A" for ln in lines):
            found.add(ns)
    return found


class _Side:
    """One tool's network and its two servers (iperf3, netprobe), up for the whole area."""

    def __init__(self, name: str, argv: Callable[..., list[str]], env: dict[str, str],
                 image: str, network: str) -> None:
        self.name, self.argv, self.env, self.image, self.network = name, argv, env, image, network
        self.targets: dict[int, str] = {}

    def run(self, *args: str, timeout: float = BOUND) -> str:
        """The tool's CLI with *args*; its stdout."""
        out = subprocess.run(self.argv(*args), env=self.env, text=True, capture_output=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args[:3])}: exit {out.returncode}: "
                               f"{(out.stderr.strip().splitlines() or [''])[-1]}")
        return out.stdout

    def start_servers(self) -> None:
        """Both servers, detached; returns once each listens (a new netns per port)."""
        for port, cmd in ((IPERF_PORT, ["iperf3", "-s", "-p", str(IPERF_PORT)]),
                          (RR_PORT, ["netprobe", "serve", str(RR_PORT)])):
            before = _listeners(port)
            self.run("run", "-d", "--name", f"nb-srv-{port}", "--network", self.network,
                     self.image, *cmd)
            wait_for(lambda port=port, before=before: bool(_listeners(port) - before), BOUND,
                     f"{self.name}'s server on port {port}")
            self.targets[port] = self.target(port)

    def target(self, port: int) -> str:
        """How a client names the server on *port*: Carrier's by name; Podman's by address (no
        name resolution on its CNI networks here, see the module's doc)."""
        name = f"nb-srv-{port}"
        if self.name == "carrier":
            return name
        return self.run("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                        name).strip()

    def client(self, *cmd: str) -> str:
        """A client container's output (``run --rm`` on the network)."""
        return self.run("run", "--rm", "--network", self.network, self.image, *cmd)

    def throughput(self, secs: int) -> float:
        """Gbit/s of one iperf3 run between two containers."""
        out = self.client("iperf3", "-J", "-c", self.targets[IPERF_PORT], "-p", str(IPERF_PORT),
                          "-t", str(secs))
        return float(json.loads(out[out.index("{"):])["end"]["sum_received"]["bits_per_second"]) / 1e9

    def latency(self, n: int) -> dict[str, float]:
        """Median and p95 µs of *n* short connections (bounded to 10 s)."""
        got = json.loads(self.client("netprobe", "rr", self.targets[RR_PORT], str(RR_PORT), str(n), "10"))
        return {"median_us": got["median_us"], "p95_us": got["p95_us"]}


def _names(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


def _stamps(out: str) -> list[int]:
    return [int(ln) for ln in out.split() if ln.isdigit()]


_STAMP_LINE = re.compile(rb" stdout F (\d+)$", re.M)


def _tree_stamps(root: Path, n: int) -> list[list[int]] | None:
    """The stamps each service of the tree has logged, once all *n* have logged both (read
    straight from the log files: a CLI call per service per poll would load the 2 cores)."""
    found = []
    for log in root.glob("containers/*/*.log*"):
        with contextlib.suppress(OSError):
            stamps = [int(m) for m in _STAMP_LINE.findall(log.read_bytes())]
            if stamps:
                found.append(stamps)
    return found if len(found) == n and all(len(s) == 2 for s in found) else None


def carrier_tree(ctx: Context, image: str, n: int) -> dict[str, float]:
    """``carrier up -d`` of *n* services that each stamp their start, resolve every other
    name, stamp again and stay (a service that left would drop out of the others' names)."""
    names = _names(n)
    everyone = " ".join(names)
    path = ctx.work / f"nb-tree-{n}.toml"
    path.write_text('name = "nb"\n' + "".join(
        f'[containers.{s}]\nimage = "{image}"\nstop_timeout = 1\ncommand = ["sh", "-c", '
        f'"stamp; netprobe resolve 30 {everyone} && exec sleep 600"]\n' for s in names))
    # The tree's own network, made --internal up front (as the tree would label it): no
    # outside DNS, so a name not there yet fails at once instead of after a resolver's timeout,
    # and nothing is asked beyond the bridge. Down removes it again.
    ctx.carrier("network", "create", "nb_default", "--internal", "--label", "carrier.tree=nb")
    t0 = time.monotonic_ns()
    try:
        subprocess.run([*carrier_cli(), "up", "-d", str(path)], env=ctx.env, check=True,
                       capture_output=True, timeout=BOUND)
        got: list[list[int]] = []

        def done() -> bool:
            got[:] = _tree_stamps(ctx.root, n) or []
            return bool(got)

        wait_for(done, BOUND, f"{n} services resolving each other", step=0.05)
    finally:
        ctx.carrier("down", str(path), check=False, timeout=BOUND)  # removes nb_default
        ctx.carrier("rm", "-f", *[f"nb-{s}" for s in names], check=False)
        ctx.carrier("network", "rm", "nb_default", check=False)  # if the tree failed to start
    return {"up": (max(s[0] for s in got) - t0) / 1e6,
            "resolved": (max(s[1] for s in got) - t0) / 1e6}


def podman_tree(podman: Podman, network: str, n: int) -> dict[str, float]:
    """*n* x ``podman run -d`` on *network*, one after the other, each stamping its start."""
    names = [f"nb-{s}" for s in _names(n)]
    t0 = time.monotonic_ns()
    try:
        for name in names:
            podman.run("run", "-d", "--name", name, "--network", network, "localhost/nets", "stamp",
                       timeout=BOUND)
        podman.run("wait", *names, timeout=BOUND)
        stamps = [_stamps(podman.run("logs", name).stdout) for name in names]
    finally:
        podman.run("rm", "-f", "-t", "0", *names, check=False)
    return {"up": (max(s[0] for s in stamps) - t0) / 1e6}


def run(ctx: Context) -> dict[str, Any]:
    """Servers up on both networks, then every variant once per round, interleaved."""
    secs = 1 if ctx.quick else 3
    rounds = 1 if ctx.quick else min(ctx.runs, 5)
    n_rr = 50 if ctx.quick else 500
    n_tree = 3 if ctx.quick else SERVICES
    tar = busybox(ctx.work / "images" / "nets", ("iperf3", str(netprobe(ctx.work))))
    ctx.carrier("import", str(tar), "bench-nets")
    ctx.carrier("network", "create", "nbn", "--internal")
    carrier = _Side("carrier", lambda *a: [*carrier_cli(), *a], ctx.env, "bench-nets", "nbn")
    podman = Podman(ctx.work)
    podman.import_image(tar, "nets")
    sides = [carrier]
    if podman.unavailable is None:
        try:
            podman.run("network", "create", "--internal", "nbn")
            sides.append(_Side("podman", podman.argv, podman.env, "localhost/nets", "nbn"))
        except subprocess.SubprocessError as e:
            podman.unavailable = f"unavailable: podman network create: {e}"
    results: dict[str, Any] = {"iperf_seconds": secs, "rounds": rounds, "connections": n_rr,
                               "services": n_tree, "image": "busybox + host iperf3 (ldd libraries) + "
                               "netprobe (static)", "podman": podman.config()}
    try:
        for side in sides:
            side.start_servers()
        variants: dict[str, Callable[[], Any]] = {}
        for side in sides:
            variants[f"{side.name} throughput"] = lambda s=side: s.throughput(secs)
            variants[f"{side.name} latency"] = lambda s=side: s.latency(n_rr)
        variants["carrier tree"] = lambda: carrier_tree(ctx, "bench-nets", n_tree)
        if len(sides) > 1:
            variants["podman tree"] = lambda: podman_tree(podman, "nbn", n_tree)
        got = interleave(variants, rounds)
    finally:
        ctx.carrier("rm", "-f", *[f"nb-srv-{p}" for p in (IPERF_PORT, RR_PORT)], check=False)
        ctx.carrier("network", "rm", "nbn", check=False)
        if len(sides) > 1:  # a server as PID 1 ignores SIGTERM: reset would wait 10 s for each
            podman.run("rm", "-f", "-t", "0", *[f"nb-srv-{p}" for p in (IPERF_PORT, RR_PORT)],
                       check=False)
        podman.close()
    for kind in ("throughput", "latency", "tree"):
        results[kind] = {side: got.get(f"{side} {kind}", podman.unavailable)
                         for side in ("carrier", "podman")}
    results["ratios"] = ratios(results)
    return results


def _median(v: Any, metric: str) -> float | None:
    return v[metric]["median"] if isinstance(v, dict) and metric in v else None


def ratios(r: dict[str, Any]) -> dict[str, float]:
    """Carrier ÷ Podman for each measure (throughput: above 1 is better; the rest: below 1)."""
    out = {}
    for kind, metric in (("throughput", "wall"), ("latency", "median_us"), ("latency", "p95_us"),
                         ("tree", "up")):
        a, b = _median(r[kind]["carrier"], metric), _median(r[kind]["podman"], metric)
        if a is not None and b:
            out[f"{kind} {metric}: carrier / podman"] = a / b
    return out
