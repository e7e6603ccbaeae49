"""Start latency: ``carrier run --rm IMG stamp`` (busybox ``true`` that prints when it ran) with
pasta, slirp4netns and --no-network, against the bare-tools floor (bench/floor.sh) and
``podman run --rm`` with runc and slirp4netns, all interleaved in one run.

Two numbers per run: *to command* (from launch to the command running, network ready, read from
the command's own monotonic stamp) and *wall* (launch to exit of the launcher)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import Context, baseline_python, interleave, ms_since, wait_for
from bench._podman import Podman

FLOOR = Path(__file__).resolve().parent / "floor.sh"


def carrier_cli(python: str = sys.executable) -> list[str]:
    """How users run Carrier: the console script next to *python*, else ``-m``."""
    script = Path(python).parent / "carrier"
    return [str(script)] if script.exists() else [python, "-m", "carrier"]


def _id_maps() -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    import getpass
    import os

    def ranges(db: str, own: int) -> list[dict[str, int]]:
        out = [{"containerID": 0, "hostID": own, "size": 1}]
        for line in Path(db).read_text().splitlines():
            f = line.split(":")
            if f[0] == getpass.getuser():
                out.append({"containerID": 1, "hostID": int(f[1]), "size": int(f[2])})
                break
        return out

    return ranges("/etc/subuid", os.getuid()), ranges("/etc/subgid", os.getgid())


def floor_template(work: Path, tarball: Path, args: list[str]) -> Path:
    """An extracted rootfs and a config.json template for floor.sh (namespaces by @HOLDER@)."""
    tag = hashlib.sha1(str(tarball).encode()).hexdigest()[:8]  # one rootfs per image tarball
    bundle = work / f"floor-{tag}"
    rootfs = bundle / "rootfs"
    if not rootfs.exists():
        rootfs.mkdir(parents=True)
        # Not /dev's nodes: a rootless user cannot make them, and runc mounts its own /dev.
        subprocess.run(["tar", "-C", str(rootfs), "--exclude=./dev/*", "-xf", str(tarball)], check=True)
    (bundle / "config.json").unlink(missing_ok=True)
    subprocess.run(["runc", "spec", "--rootless", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=args)
    config["root"] = {"path": str(rootfs), "readonly": False}
    config["hostname"] = "floor"
    ns = [{"type": "pid"}, {"type": "mount"}]
    ns += [{"type": t, "path": f"/proc/@HOLDER@/ns/{t}"} for t in ("uts", "ipc", "user")]
    ns.append({"type": "network", "path": "/proc/@HOLDER@/ns/net"})
    config["linux"]["namespaces"] = ns
    config["linux"]["uidMappings"], config["linux"]["gidMappings"] = _id_maps()
    for m in config["mounts"]:
        if m["destination"] == "/sys":  # we own the netns, so a real sysfs, as Carrier does
            m.update(type="sysfs", source="sysfs", options=["nosuid", "noexec", "nodev", "ro"])
    name = "-".join(a.rsplit("/", 1)[-1] for a in args[:1])
    path = work / f"floor-{tag}-{name}.json"
    path.write_text(json.dumps(config))
    return path


def stamped(argv: list[str], env: dict[str, str], timeout: float = 60,
            cwd: str | None = None) -> dict[str, float]:
    """Run *argv* whose command prints the monotonic clock; to-command and wall times in ms."""
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=True,
                         cwd=cwd)
    wall = ms_since(t0)
    stamps = [ln for ln in out.stdout.split() if ln.isdigit()]
    if not stamps:
        raise RuntimeError(f"no stamp in the output of {argv[0]}: {out.stdout[-200:]!r}")
    return {"to_command": (int(stamps[-1]) / 1e9 - t0) * 1000, "wall": wall}


def run(ctx: Context) -> dict[str, Any]:
    """All variants, interleaved; ratios of medians."""
    cli = carrier_cli()
    env = ctx.env
    template = floor_template(ctx.work, ctx.tarballs["small"], ["/bin/stamp"])
    podman = Podman(ctx.work)
    podman.import_image(ctx.tarballs["small"], "bench")
    image = ctx.images["small"]

    def carrier(*flags: str) -> Any:
        return lambda: stamped([*cli, "run", "--rm", *flags, image, "stamp"], env)

    def floor(network: str) -> Any:
        return lambda: stamped(["bash", str(FLOOR), str(template), network], env)

    def nothing_warm() -> Any:
        from bench.detached import _end, fork_server

        _end(fork_server())  # before the clock starts: this sample finds no fork server
        got = stamped([*cli, "run", "--rm", "--network", "pasta", image, "stamp"], env)
        # The server it started must be up before the next sample, or its start-up (imports)
        # would slow whichever variant runs next: it listens, and it has served a command.
        wait_for(lambda: fork_server() is not None, 10, "the fork server to listen", step=0.01)
        subprocess.run([*cli, "ps"], env=env, capture_output=True, timeout=60, check=True)
        return got

    plain_env = {**env, "CARRIER_FORK_SERVER": "0"}
    variants = {
        "carrier pasta": carrier("--network", "pasta"),
        "carrier pasta, plain process": lambda: stamped(
            [*cli, "run", "--rm", "--network", "pasta", image, "stamp"], plain_env),
        "carrier pasta, nothing warm": nothing_warm,
        "floor pasta": floor("pasta"),
        "carrier slirp4netns": carrier("--network", "slirp4netns"),
        "floor slirp4netns": floor("slirp4netns"),
        "carrier --no-network": carrier("--no-network"),
        "floor none": floor("none"),
    }
    if (base := baseline_python()) is not None:  # an earlier build, in the same run
        base_cli = carrier_cli(base)
        variants["baseline carrier pasta"] = lambda: stamped(
            [*base_cli, "run", "--rm", "--network", "pasta", image, "stamp"], env, cwd="/")
    if podman.unavailable is None:
        variants["podman slirp4netns"] = lambda: stamped(podman.argv(
            "run", "--rm", "--network", "slirp4netns", "localhost/bench", "/bin/stamp"), podman.env)
    try:
        results: dict[str, Any] = {"variants": interleave(variants, ctx.runs),
                                   "podman": podman.config()}
    finally:
        podman.close()
    if podman.unavailable is not None:
        results["variants"]["podman slirp4netns"] = podman.unavailable
    results["ratios"] = ratios(results["variants"])
    return results


def _median(v: Any, metric: str) -> float | None:
    return v[metric]["median"] if isinstance(v, dict) and metric in v else None


def ratios(variants: dict[str, Any]) -> dict[str, float]:
    """Carrier ÷ floor per network mode and Carrier ÷ Podman (slirp4netns and pasta)."""
    out: dict[str, float] = {}
    pairs = [("carrier pasta", "floor pasta"), ("carrier slirp4netns", "floor slirp4netns"),
             ("carrier --no-network", "floor none"), ("carrier pasta", "podman slirp4netns"),
             ("carrier slirp4netns", "podman slirp4netns"),
             ("carrier pasta", "baseline carrier pasta"),
             ("carrier pasta", "carrier pasta, plain process"),
             ("carrier pasta, nothing warm", "carrier pasta, plain process"),
             ("carrier pasta, nothing warm", "baseline carrier pasta")]
    for a, b in pairs:
        for metric in ("to_command", "wall"):
            x, y = _median(variants.get(a), metric), _median(variants.get(b), metric)
            if x is not None and y:
                out[f"{a} / {b} ({metric})"] = x / y
    return out
