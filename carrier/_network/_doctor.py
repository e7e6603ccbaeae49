"""``carrier network check``: is this machine ready for rootless networking, and if not, how
to fix it."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .._sandbox._idmap import subordinate_range
from ._choice import install_hint


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown version"
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln and "syslog" not in ln]
    return lines[0].strip() if lines else "unknown version"


@dataclass(frozen=True)
class Check:
    """One item: passed or not, what was found, how to fix it, and what it is needed for."""

    ok: bool
    found: str
    fix: str
    role: str = "rootless"  # "essential": no rootless network without it; "helper": one of two


def results() -> list[Check]:
    """Every check of this machine."""
    checks: list[Check] = []
    userns = subprocess.run(["unshare", "--user", "--map-root-user", "true"],
                            capture_output=True).returncode == 0
    checks.append(Check(userns, "unprivileged user namespaces",
                        "sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=28633",
                        "essential"))
    tun = Path("/dev/net/tun")
    tun_ok = tun.exists() and os.access(tun, os.R_OK | os.W_OK)
    checks.append(Check(tun_ok, "/dev/net/tun readable and writable",
                        "sudo chmod 0666 /dev/net/tun (Debian ships it 0600)", "essential"))
    hint = install_hint()
    pasta = shutil.which("pasta")
    slirp = shutil.which("slirp4netns")
    checks.append(Check(pasta is not None,
                        f"pasta: {_version(['pasta', '--version']) if pasta else 'missing'}", hint,
                        "helper"))
    checks.append(Check(slirp is not None,
                        f"slirp4netns: {_version(['slirp4netns', '--version']) if slirp else 'missing'}",
                        hint, "helper"))
    user = getpass.getuser()
    for kind in ("subuid", "subgid"):
        entry = subordinate_range(Path(f"/etc/{kind}"), user, os.getuid())
        found = f"{entry[0]}+{entry[1]}" if entry else "no entry"
        checks.append(Check(entry is not None, f"/etc/{kind} for {user}: {found}",
                            f"sudo usermod --add-sub{kind[3:]}s 100000-165535 {user}"))
    for tool in ("newuidmap", "newgidmap"):
        checks.append(Check(shutil.which(tool) is not None, tool, "apt install uidmap"))
    return checks


def check() -> int:
    """Print every check with its fix; exit 0 when a rootless network can be had."""
    checks = results()
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'}  {c.found}" + ("" if c.ok else f"\n      fix: {c.fix}"))
    helper = any(c.ok for c in checks if c.role == "helper")
    essential = all(c.ok for c in checks if c.role == "essential")
    return 0 if helper and essential else 1
