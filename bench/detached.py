"""Detached containers: N x ``run -d IMG sleep`` one after another, side by side with Podman.

Per tool: the total time of the N starts, the memory each tool's own processes keep per
container (PSS from smaps_rollup, so that pages shared copy-on-write are split fairly; the
network helpers reported apart, the containers' own ``sleep`` not counted; pasta, which makes
itself non-dumpable, estimated from its status), and ``ps`` with
the N containers running (median of ``runs``). Carrier's own processes: its keeper (or a
supervisor per container with ``CARRIER_KEEPER=0``), the fork server, ``runc``, the holders and
port relays; Podman's: conmon, rootlessport and its per-user pause process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import Context, baseline_python, interleave
from bench._podman import Podman
from bench.start import carrier_cli

HELPERS = {"pasta", "pasta.avx2", "passt", "passt.avx2", "slirp4netns"}
ESTIMATED = " (est.)"  # a non-dumpable process: PSS estimated from its status
CONTAINER = {"sleep"}


def _user_pss() -> dict[str, list[int]]:
    """PSS (KiB) of every process of this user but this one, grouped by command name."""
    out: dict[str, list[int]] = {}
    estimated: dict[str, list[tuple[int, int]]] = {}
    me = os.getpid()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        pid = int(entry)
        try:
            if pid == me or os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        try:
            pss = next(int(ln.split()[1]) for ln in Path(f"/proc/{entry}/smaps_rollup").read_text()
                       .splitlines() if ln.startswith("Pss:"))
        except PermissionError:  # non-dumpable (pasta makes itself so): its status instead
            with contextlib.suppress(OSError, StopIteration, ValueError, KeyError, IndexError):
                estimated.setdefault(comm, []).append(_status_rss(entry))  # gone: no Rss lines
            continue
        except (OSError, StopIteration, ValueError):
            continue
        out.setdefault(comm, []).append(pss)
    for comm, sizes in estimated.items():  # the file pages split among the instances, as PSS does
        out[comm + ESTIMATED] = [anon + file // len(sizes) for anon, file in sizes]
    return out


def _status_rss(entry: str) -> tuple[int, int]:
    """(private, file-backed) resident KiB of a process whose smaps this user may not read:
    ``RssAnon + RssShmem`` and ``RssFile`` from ``/proc/PID/status``, which anyone may read.
    Checked against root's reading of a pasta's smaps_rollup: 19962 estimated, 19977 PSS."""
    fields = dict(ln.split(":", 1) for ln in Path(f"/proc/{entry}/status").read_text().splitlines())
    kib = {k: int(fields[k].split()[0]) for k in ("RssAnon", "RssShmem", "RssFile")}
    return kib["RssAnon"] + kib["RssShmem"], kib["RssFile"]


def _memory(before: dict[str, list[int]], after: dict[str, list[int]], n: int) -> dict[str, Any]:
    """What the N containers added, per container, by process name; helpers apart."""
    by: dict[str, Any] = {}
    for comm in sorted(set(after) | set(before)):
        if comm in CONTAINER:
            continue
        added = sum(after.get(comm, [])) - sum(before.get(comm, []))
        count = len(after.get(comm, [])) - len(before.get(comm, []))
        if added > 0 or count > 0:
            by[comm] = {"count": count, "pss_kib_per_container": added / n}
    own = sum(v["pss_kib_per_container"] for c, v in by.items() if _helper(c) is None)
    helpers = sum(v["pss_kib_per_container"] for c, v in by.items() if _helper(c) is not None)
    return {"own_pss_kib_per_container": own, "helper_pss_kib_per_container": helpers,
            "total_pss_kib_per_container": own + helpers, "by_process": by}


def _helper(comm: str) -> str | None:
    """The network helper *comm* names (estimated or measured), or None."""
    name = comm.removesuffix(ESTIMATED)
    return name if name in HELPERS else None


def fork_server(path: Path | None = None) -> int | None:
    """The pid of the fork server listening on *path* (default: the one this bench's
    ``carrier`` commands use), if one listens."""
    path = path or server_socket(sys.executable)
    inodes = {ln.split()[6] for ln in Path("/proc/net/unix").read_text().splitlines()[1:]
              if path is not None and ln.endswith(f" {path}")}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{entry}/fd/{fd}")[8:-1] in inodes
                   for fd in os.listdir(f"/proc/{entry}/fd")):
                return int(entry)
        except OSError:
            continue
    return None


def _keepers() -> list[int]:
    """This user's Carrier keepers (their title names them)."""
    return _titled(b"carrier._cli._keeper")


def _servers() -> list[int]:
    """Every fork server of this user (a command starts one beside it when it finds none, so
    an earlier command's may still be coming up when another is ended)."""
    return _titled(b"carrier._cli._zygote")


def _titled(mark: bytes) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{entry}").st_uid == os.getuid() and \
                    any(mark in part for part in
                        Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[:3]):
                found.append(int(entry))
        except OSError:
            continue
    return found


def _warm(command: Any, path: Path | None, bound: float = 20) -> None:
    """Run *command* (one that starts the fork server beside it), wait until the server
    listens on *path* (bounded poll: the server is no child of ours to wait on), and run it
    once more: served, it returns once the server has imported and warmed up."""
    command()
    deadline = time.monotonic() + bound
    while fork_server(path) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the fork server did not come up")
        time.sleep(0.05)
    command()


@functools.cache
def server_socket(python: str) -> Path | None:
    """The fork-server socket of the ``carrier`` console script of *python*'s install: asked
    of that install itself, from ``/`` (the package it imports may not be this checkout's:
    a regular install's lies in site-packages, and the socket's name digests its path)."""
    where = subprocess.run([python, "-c", "from carrier._cli._fastpath import socket_path; "
                            "print(socket_path())"], cwd="/", check=True, capture_output=True,
                           text=True, timeout=60).stdout.strip()
    return Path(where) if where != "None" else None


def _end(pid: int | None) -> None:
    """SIGKILL *pid* and wait for it to be gone (bounded)."""
    if pid is None:
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, 9)
        select.select([fd], [], [], 10)
    finally:
        os.close(fd)


def _side(name: str, start: Any, ps: Any, stop: Any, n: int, runs: int,
          resident: int | None, warm: Any = None, alone: Any = None,
          idle: float = 10.0) -> dict[str, Any]:
    """Measure one tool, with its per-user resident process (fork server, pause process) ended
    first, so that its share is counted among what the N containers cost; *warm* (after the
    first count) starts it again, so that every one of the N starts the way the tool runs
    warm (without it, the first ``run -d`` ran plainly and kept a 31 MiB supervisor); *alone*
    names the per-user server to end for a second count, as its idle exit leaves things; *idle*
    is the window of the idle CPU count."""
    _end(resident)
    if alone is not None:
        for server in _servers():  # a second one, started beside an earlier command, too
            _end(server)
    for keeper in _keepers():  # idle (a side before removed its containers): counted afresh
        _end(keeper)
    _helpers_gone()
    before = _user_pss()
    if warm is not None:
        warm()
    t0 = time.perf_counter()
    for i in range(n):
        start(f"det{i}")
    total = time.perf_counter() - t0
    time.sleep(2)  # settle: the starts' short-lived processes end; not a wait for a result
    memory = _memory(before, _user_pss(), n)
    memory["fork_servers_after"] = len(_servers())  # whether its share could be counted
    listing = interleave({f"{name} ps": ps}, runs)[f"{name} ps"]["wall"]
    cpu = _idle_cpu(idle)
    if alone is not None:  # the per-user server gone (idle), its pages the keeper's own
        for server in alone():
            _end(server)
        time.sleep(1)  # settle: not a wait for a result
        memory["own_pss_kib_per_container_server_gone"] = _memory(
            before, _user_pss(), n)["own_pss_kib_per_container"]
    stop()
    return {"start_all_s": total, "start_each_ms": total / n * 1000, **memory, **cpu,
            "ps": listing}


def _helpers_gone(bound: float = 30) -> None:
    """Wait until the network helpers of the side before have exited (its stop returns before
    they do): one still there in the first count and gone by the second would take its ~19 MiB
    off this side's own. Bounded poll: they are no children of ours."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        left = [c for c in _ticks() if c in HELPERS]
        if not left:
            return
        time.sleep(0.1)
    raise RuntimeError(f"network helpers of the side before still run: {left}")


def _ticks() -> dict[str, int]:
    """CPU clock ticks (user + system) of every process of this user but this one, summed per
    command name."""
    out: dict[str, int] = {}
    me = os.getpid()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(entry) == me or os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            head, _, rest = Path(f"/proc/{entry}/stat").read_text().rpartition(")")
            fields = rest.split()
        except OSError:
            continue
        comm = head.partition("(")[2]
        out[comm] = out.get(comm, 0) + int(fields[11]) + int(fields[12])
    return out


def _idle_cpu(window: float = 10.0) -> dict[str, float]:
    """The share of one CPU the tool's resident processes (helpers apart, containers not
    counted) used while the N containers idled for *window* seconds."""
    first = _ticks()
    time.sleep(window)  # the measured idle window itself
    last = _ticks()
    hz = os.sysconf("SC_CLK_TCK")
    used = {c: (t - first.get(c, 0)) / hz / window * 100 for c, t in last.items()
            if c not in CONTAINER}
    return {"idle_cpu_percent_own": sum(v for c, v in used.items() if c not in HELPERS),
            "idle_cpu_percent_helpers": sum(v for c, v in used.items() if c in HELPERS)}


def run(ctx: Context) -> dict[str, Any]:
    """Carrier, then Podman, with the same image and helper (pasta when Podman has it)."""
    n = 10 if ctx.quick else 100
    idle = 2.0 if ctx.quick else 10.0  # the smoke run shows the count works, not its value
    cli = carrier_cli()
    image = ctx.images["small"]

    def timed(argv: list[str], env: dict[str, str], cwd: str | None = None) -> float:
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120, cwd=cwd)
        return (time.perf_counter() - t0) * 1000

    def carrier_start(name: str, network: str = "pasta") -> None:
        subprocess.run([*cli, "run", "-d", "--name", name, "--network", network, image, "sleep",
                        "100000"], env=ctx.env, check=True, capture_output=True, timeout=120)

    def carrier_stop() -> None:
        names = [f"det{i}" for i in range(n)]
        subprocess.run([*cli, "rm", "-f", *names], env=ctx.env, capture_output=True, timeout=600,
                       check=False)

    results: dict[str, Any] = {"n": n}
    results["carrier"] = _side("carrier", carrier_start, lambda: timed([*cli, "ps"], ctx.env),
                               carrier_stop, n, ctx.runs, fork_server(),
                               lambda: _warm(lambda: timed([*cli, "ps"], ctx.env), None),
                               _servers, idle)
    # Podman 4.3 has no pasta: the same helper as its side, so that the totals compare alike.
    results["carrier, slirp4netns"] = _side(
        "carrier, slirp4netns", functools.partial(carrier_start, network="slirp4netns"),
        lambda: timed([*cli, "ps"], ctx.env), carrier_stop, n, ctx.runs, fork_server(),
        lambda: _warm(lambda: timed([*cli, "ps"], ctx.env), None), idle=idle)
    own = {**ctx.env, "CARRIER_KEEPER": "0"}  # a supervisor process per container, as before

    def own_start(name: str) -> None:
        subprocess.run([*cli, "run", "-d", "--name", name, "--network", "pasta", image, "sleep",
                        "100000"], env=own, check=True, capture_output=True, timeout=120)

    results["carrier, a supervisor per container"] = _side(
        "carrier, a supervisor per container", own_start, lambda: timed([*cli, "ps"], own),
        carrier_stop, n, ctx.runs, fork_server(),
        lambda: _warm(lambda: timed([*cli, "ps"], own), None), idle=idle)
    _end(fork_server())
    if (base := baseline_python()) is not None:  # an earlier build, the same way, in this run
        results["baseline carrier"] = _baseline(base, ctx, image, n, timed)
    plain = {**ctx.env, "CARRIER_FORK_SERVER": "0"}  # each command its own process, as before

    def plain_start(name: str) -> None:
        subprocess.run([*cli, "run", "-d", "--name", name, "--network", "pasta", image, "sleep",
                        "100000"], env=plain, check=True, capture_output=True, timeout=120)

    results["carrier, plain processes"] = _side(
        "carrier, plain processes", plain_start, lambda: timed([*cli, "ps"], plain), carrier_stop,
        n, ctx.runs, None, idle=idle)
    podman = Podman(ctx.work)
    try:
        podman.import_image(ctx.tarballs["small"], "bench")
        if podman.unavailable is None:
            def podman_start(name: str) -> None:
                podman.run("run", "-d", "--name", name, "--network", "slirp4netns",
                           "localhost/bench", "sleep", "100000")

            def podman_stop() -> None:
                podman.run("rm", "-f", "-t", "0", *[f"det{i}" for i in range(n)], timeout=600,
                           check=False)

            pause = podman.dir / "run" / "libpod" / "tmp" / "pause.pid"
            results["podman"] = _side("podman", podman_start,
                                      lambda: timed(podman.argv("ps"), podman.env),
                                      podman_stop, n, ctx.runs,
                                      int(pause.read_text()) if pause.exists() else None,
                                      idle=idle)
            results["podman_config"] = podman.config()
        else:
            results["podman"] = podman.unavailable
    finally:
        podman.close()
    results["ratios"] = _ratios(results)
    return results


def _baseline(python: str, ctx: Context, image: str, n: int, timed: Any) -> dict[str, Any]:
    """The fork-server side for the Carrier install of *python* ($CARRIER_BENCH_BASELINE), run
    from ``/`` so that ``-m carrier`` cannot pick up this checkout."""
    cli = carrier_cli(python)
    server = server_socket(python)

    def start(name: str) -> None:
        subprocess.run([*cli, "run", "-d", "--name", name, "--network", "pasta", image, "sleep",
                        "100000"], env=ctx.env, cwd="/", check=True, capture_output=True,
                       timeout=120)

    def stop() -> None:
        subprocess.run([*cli, "rm", "-f", *[f"det{i}" for i in range(n)]], env=ctx.env, cwd="/",
                       capture_output=True, timeout=600, check=False)

    side = _side("baseline carrier", start, lambda: timed([*cli, "ps"], ctx.env, "/"), stop, n,
                 ctx.runs, fork_server(server) if server else None,
                 (lambda: _warm(lambda: timed([*cli, "ps"], ctx.env, "/"), server)) if server
                 else None)
    _end(fork_server(server) if server else None)
    return side


def _ratios(r: dict[str, Any]) -> dict[str, float]:
    c, p, q = r.get("carrier"), r.get("podman"), r.get("carrier, plain processes")
    out: dict[str, float] = {}
    if isinstance(c, dict) and isinstance(b := r.get("baseline carrier"), dict):
        out["this build / baseline (start all)"] = c["start_all_s"] / b["start_all_s"]
        out["this build / baseline (own PSS per container)"] = (
            c["own_pss_kib_per_container"] / b["own_pss_kib_per_container"])
    if isinstance(c, dict) and isinstance(o := r.get("carrier, a supervisor per container"), dict):
        out["keeper / a supervisor per container (start all)"] = c["start_all_s"] / o["start_all_s"]
        out["keeper / a supervisor per container (own PSS per container)"] = (
            c["own_pss_kib_per_container"] / o["own_pss_kib_per_container"])
    if isinstance(c, dict) and isinstance(q, dict):
        out["fork server / plain processes (start all)"] = c["start_all_s"] / q["start_all_s"]
        out["fork server / plain processes (own PSS per container)"] = (
            c["own_pss_kib_per_container"] / q["own_pss_kib_per_container"])
    if not isinstance(c, dict) or not isinstance(p, dict):
        return out
    out |= {"carrier / podman (start all)": c["start_all_s"] / p["start_all_s"],
           "carrier / podman (ps median)": c["ps"]["median"] / p["ps"]["median"]}
    if p["own_pss_kib_per_container"] > 0:
        out["carrier / podman (own PSS per container)"] = (c["own_pss_kib_per_container"]
                                                            / p["own_pss_kib_per_container"])
    if p["own_pss_kib_per_container"] > 0 and "own_pss_kib_per_container_server_gone" in c:
        out["carrier / podman (own PSS per container, fork server gone)"] = (
            c["own_pss_kib_per_container_server_gone"] / p["own_pss_kib_per_container"])
    if p["total_pss_kib_per_container"] > 0:
        out["carrier / podman (PSS with helpers)"] = (c["total_pss_kib_per_container"]
                                                      / p["total_pss_kib_per_container"])
    if p["total_pss_kib_per_container"] > 0 and isinstance(
            s := r.get("carrier, slirp4netns"), dict):
        out["carrier slirp4netns / podman (PSS with helpers)"] = (
            s["total_pss_kib_per_container"] / p["total_pss_kib_per_container"])
        out["carrier slirp4netns / podman (start all)"] = s["start_all_s"] / p["start_all_s"]
    return out

