"""Start latency: ``carrier run --rm IMG true`` against bare ``runc run`` of the same bundle.

Both run interleaved (A B A B ...) in one process so machine noise hits them alike; the result
is the ratio of medians. Run as an unprivileged user: ``python -m bench.start_latency -n 20``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import make_rootfs_tar


def bare_bundle(work: Path, tarball: Path) -> Path:
    """A rootless runc bundle with the same rootfs and namespaces as a Carrier container."""
    bundle = work / "bare"
    (bundle / "rootfs").mkdir(parents=True)
    subprocess.run(["tar", "-C", str(bundle / "rootfs"), "-xf", str(tarball)], check=True)
    subprocess.run(["runc", "spec", "--rootless", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(terminal=False, args=["true"])
    config["linux"]["namespaces"].append({"type": "network"})
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run, in milliseconds."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="runs of each (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="carrier-bench-") as tmp:
        work = Path(tmp)
        tarball = make_rootfs_tar(work)
        env = {**os.environ, "CARRIER_ROOT": str(work / "root")}
        carrier = [sys.executable, "-m", "carrier"]
        subprocess.run([*carrier, "import", str(tarball), "bench"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        bundle = bare_bundle(work, tarball)
        state = work / "runc-state"
        runs: dict[str, list[float]] = {"carrier": [], "runc": []}
        for i in range(args.n):
            runs["carrier"].append(timed([*carrier, "run", "--rm", "bench", "true"], env))
            runs["runc"].append(timed(["runc", "--root", str(state), "run", "--bundle",
                                       str(bundle), f"bare{i}"], env))
        shutil.rmtree(state, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"{'':10}{'median':>10}{'min':>10}{'max':>10}   (ms, n={args.n})")
    for k, v in runs.items():
        print(f"{k:10}{med[k]:10.1f}{min(v):10.1f}{max(v):10.1f}")
    print(f"carrier / bare runc = {med['carrier'] / med['runc']:.2f}")


if __name__ == "__main__":
    main()
