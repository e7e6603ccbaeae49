"""CLI overhead: ``carrier --help`` and ``carrier ps`` against ``python -c pass``, plus the
``-X importtime`` breakdown (top offenders) of ``carrier ps`` and of the ``run`` path."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from bench._common import Context, baseline_python, interleave, ms_since

HEAVY = ["anyio", "trio", "structlog", "rich", "cyclopts", "pyroute2", "httpx", "jsonschema"]


def _timed(argv: list[str], env: dict[str, str], cwd: str | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, capture_output=True, check=True, timeout=60, cwd=cwd)
    return ms_since(t0)


def importtime(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Parse ``-X importtime``: total, the top 10 by self time, top-level packages by
    cumulative time, and which heavy packages were loaded at all."""
    out = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True,
                         text=True, timeout=120)
    rows: list[tuple[int, int, str]] = []  # self us, cumulative us, name (indent kept)
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = (p.rstrip() for p in line[len("import time:"):].split("|", 2))
        rows.append((int(self_us), int(cum_us), name))
    top_level = [(c, n.strip()) for _, c, n in rows if not n.startswith("  ")]
    packages: dict[str, int] = {}
    for c, n in top_level:
        packages[n.split(".")[0]] = packages.get(n.split(".")[0], 0) + c
    loaded = {r[2].strip() for r in rows}
    return {
        "total_ms": sum(c for c, _ in top_level) / 1000,
        "modules": len(rows),
        "top_self_ms": [[n.strip(), s / 1000] for s, _, n in sorted(rows, reverse=True)[:10]],
        "top_packages_ms": [[k, v / 1000] for k, v in sorted(packages.items(), key=lambda kv: -kv[1])][:12],
        "heavy_loaded": [h for h in HEAVY if h in loaded],
    }


def run(ctx: Context) -> dict[str, Any]:
    """Interleaved wall times, then one import profile per path."""
    py = [sys.executable]
    env = ctx.env
    variants = {
        "python -c pass": lambda: _timed([*py, "-c", "pass"], env),
        "carrier --help": lambda: _timed([*py, "-m", "carrier", "--help"], env, "/"),
        "carrier ps": lambda: _timed([*py, "-m", "carrier", "ps"], env, "/"),
    }
    if (base := baseline_python()) is not None:  # an earlier build, in the same run
        variants["baseline carrier --help"] = lambda: _timed([base, "-m", "carrier", "--help"], env, "/")
        variants["baseline carrier ps"] = lambda: _timed([base, "-m", "carrier", "ps"], env, "/")
    return {
        "variants": interleave(variants, ctx.runs),
        "importtime": {
            "carrier ps": importtime(["-m", "carrier", "ps"], env),
            "carrier --help": importtime(["-m", "carrier", "--help"], env),
            "carrier run --rm --network pasta": importtime(
                ["-m", "carrier", "run", "--rm", "--network", "pasta", ctx.images["small"], "true"], env),
        },
    }
