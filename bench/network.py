"""Network benchmarks (issue 3), side by side in one run.

- Start to command with the network ready: pasta vs slirp4netns vs --no-network, interleaved.
- TCP throughput with iperf3: container -> host loopback (--host-loopback) and host ->
  container through -p, per helper, against host loopback alone as the ceiling.

All traffic stays on this machine: loopback, the helper's host mapping, published ports.
Run as an unprivileged user inside the test sandbox, e.g. ``python -m bench.network -n 10``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._image import with_programs

HELPERS = ["pasta", "slirp4netns"]


def _carrier(env: dict[str, str], *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "carrier", *args], env=env, text=True,
                          capture_output=True, check=True, **kw)  # type: ignore[call-overload, no-any-return]


def start_times(env: dict[str, str], n: int) -> dict[str, list[float]]:
    """Wall time of ``run --rm IMG true`` per network mode, interleaved."""
    modes = {"pasta": ["--network", "pasta"], "slirp4netns": ["--network", "slirp4netns"],
             "none": ["--no-network"]}
    times: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(n):
        for mode, flags in modes.items():
            t = time.perf_counter()
            _carrier(env, "run", "--rm", *flags, "bench", "true")
            times[mode].append((time.perf_counter() - t) * 1000)
    return times


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _iperf_client(argv: list[str]) -> float:
    """Run an iperf3 client (JSON output) and return its received Gbit/s."""
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def throughput(env: dict[str, str], seconds: int) -> dict[str, float]:
    """Gbit/s for the ceiling and for each helper in both directions."""
    results: dict[str, float] = {}
    port = _free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL)
    time.sleep(0.3)  # bench only: iperf3 offers no readiness signal
    results["host loopback (ceiling)"] = _iperf_client(
        ["iperf3", "-J", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds)])
    server.wait(timeout=30)
    for helper in HELPERS:
        port = _free_port()
        server = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                                  stdout=subprocess.DEVNULL)
        time.sleep(0.3)
        out = _carrier(env, "run", "--rm", "--network", helper, "--host-loopback", "bench",
                       "iperf3", "-J", "-c", "host.containers.internal", "-p", str(port),
                       "-t", str(seconds), timeout=120).stdout
        results[f"{helper}: container -> host"] = float(
            json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9
        server.wait(timeout=30)
        port = _free_port()
        _carrier(env, "run", "-d", "--name", f"srv-{helper}", "--network", helper, "-p",
                 f"127.0.0.1:{port}:5201", "bench", "iperf3", "-s", "-1")
        time.sleep(0.5)
        results[f"{helper}: host -> container (-p)"] = _iperf_client(
            ["iperf3", "-J", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds)])
        _carrier(env, "rm", "-f", f"srv-{helper}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="start-time runs per mode")
    parser.add_argument("-t", type=int, default=3, help="iperf3 seconds per direction")
    parser.add_argument("--quick", action="store_true", help="2 runs, 1 s transfers (smoke)")
    args = parser.parse_args()
    n, secs = (2, 1) if args.quick else (args.n, args.t)
    with tempfile.TemporaryDirectory(prefix="carrier-bench-") as tmp:
        env = {**os.environ, "CARRIER_ROOT": str(Path(tmp) / "root")}
        _carrier(env, "import", str(with_programs(Path(tmp), ["iperf3"])), "bench")
        times = start_times(env, n)
        rates = throughput(env, secs)
    print(f"start to exit of `true` (ms, n={n})   median     min     max")
    for mode, v in times.items():
        print(f"  {mode:28}{statistics.median(v):9.1f}{min(v):8.1f}{max(v):8.1f}")
    ceiling = rates["host loopback (ceiling)"]
    print("TCP throughput (Gbit/s)               rate   of ceiling")
    for what, rate in rates.items():
        print(f"  {what:32}{rate:8.2f}{rate / ceiling:9.0%}")


if __name__ == "__main__":
    main()
