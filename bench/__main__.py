"""The benchmark suite: ``python -m bench all [--quick] [--only AREA...] [--runs N]``.

Run it as an unprivileged user (rootless is what it measures), ideally inside the test sandbox
(scripts/bench). A full run writes ``bench/results/<date>.json`` and regenerates the measured
sections of docs/performance.md and docs/perf/*.png; ``--quick`` (CI's smoke run) writes only
into a temp dir. ``python -m bench report FILE`` renders a results file into the docs again."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench._common import REPO, Context, machine, one_line

AREAS = ["start", "cli", "detached", "scale", "failure", "throughput", "storage", "ports",
         "fixtures", "networks"]


def _prepare(ctx: Context, areas: list[str]) -> None:
    """Build and import the images the chosen areas need."""
    from bench._image import busybox, large

    img = ctx.work / "images"
    ctx.tarballs["small"] = busybox(img / "small")
    ctx.images["small"] = "bench"
    ctx.carrier("import", str(ctx.tarballs["small"]), "bench")
    if "throughput" in areas:
        ctx.tarballs["net"] = busybox(img / "net", ("iperf3",))
        ctx.images["net"] = "bench-net"
        ctx.carrier("import", str(ctx.tarballs["net"]), "bench-net")
    if "ports" in areas or ("fixtures" in areas and not ctx.quick):
        from bench.ports import debian_image

        if (debian := debian_image()) is not None:
            ctx.tarballs["debian"] = debian
            ctx.images["debian"] = "bench-debian"
            ctx.carrier("import", str(debian), "bench-debian", timeout=600)
    if "storage" in areas:
        ctx.large_mb = 20 if ctx.quick else 200
        ctx.tarballs["large"] = large(img, ctx.tarballs["small"], ctx.large_mb)
        ctx.images["large"] = "bench-large"
        ctx.carrier("import", str(ctx.tarballs["large"]), "bench-large", timeout=600)


def measure(areas: list[str], quick: bool, runs: int, work: Path) -> dict[str, Any]:
    """Run the areas in order; one that fails is recorded with its error, the rest go on."""
    ctx = Context(work=work, quick=quick, runs=runs)
    ctx.env = {**os.environ, "CARRIER_ROOT": str(ctx.root)}
    os.environ["CARRIER_ROOT"] = str(ctx.root)  # the library areas run in this process
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": quick, "runs": runs, "machine": machine(), "areas": {},
    }
    t0 = time.perf_counter()
    _prepare(ctx, areas)
    for area in areas:
        print(f"bench: {area} ...", file=sys.stderr, flush=True)
        ta = time.perf_counter()
        try:
            got = importlib.import_module(f"bench.{area}").run(ctx)
        except Exception as e:
            traceback.print_exc()
            got = {"error": one_line(e)}
        got["seconds"] = round(time.perf_counter() - ta, 1)
        results["areas"][area] = got
        print(f"bench: {area} done in {got['seconds']} s", file=sys.stderr, flush=True)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("all", help="measure (all areas, or --only some)")
    a.add_argument("--quick", action="store_true", help="smoke run: 2 runs, tiny N, temp output")
    a.add_argument("--only", nargs="+", choices=AREAS, metavar="AREA", help=f"areas: {', '.join(AREAS)}")
    a.add_argument("--runs", type=int, help="runs per variant (default 10; --quick: 2)")
    a.add_argument("--out", type=Path, help="results directory (default bench/results; --quick: temp)")
    a.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    r = sub.add_parser("report", help="render a results file into docs/performance.md and docs/perf/")
    r.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    from bench import _report

    if args.command == "report":
        _report.write_docs(json.loads(args.file.read_text()), REPO / "docs")
        return 0
    runs = args.runs or (2 if args.quick else 10)
    areas = args.only or AREAS
    work = Path(tempfile.mkdtemp(prefix="carrier-bench-"))
    try:
        results = measure(areas, args.quick, runs, work)
    finally:
        _cleanup(work)
    out = args.out or (Path(tempfile.mkdtemp(prefix="carrier-bench-out-")) if args.quick
                       else REPO / "bench" / "results")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{results['date']}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"bench: results in {path}", file=sys.stderr)
    if args.quick or args.no_docs:
        # The smoke run renders too (so the report code cannot rot), into its own directory.
        _report.write_docs(results, out / "docs", plots=True)
        print(f"bench: report in {out / 'docs'}", file=sys.stderr)
    else:
        _report.write_docs(results, REPO / "docs")
        print("bench: docs/performance.md and docs/perf/ regenerated", file=sys.stderr)
    print(_report.summary(results))
    return 0


def _cleanup(work: Path) -> None:
    """Remove the run's temp dir; files a container chowned to subuids need its user namespace."""
    shutil.rmtree(work, ignore_errors=True)
    if work.exists():
        subprocess.run(["unshare", "--user", "--map-root-user", "--map-auto", "rm", "-rf", str(work)],
                       capture_output=True, timeout=300, check=False)


if __name__ == "__main__":
    sys.exit(main())
