"""``carrier network check``: is this machine ready for rootless networking, and if not, how
to fix it."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from ._nethelper import install_hint
from ._sandbox import subordinate_range


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown version"
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln and "syslog" not in ln]
    return lines[0].strip() if lines else "unknown version"


def results() -> list[tuple[bool, str, str]]:
    """Each check as (passed, what was found, how to fix it)."""
    checks: list[tuple[bool, str, str]] = []
    userns = subprocess.run(["unshare", "--user", "--map-root-user", "true"],
                            capture_output=True).returncode == 0
    checks.append((userns, "unprivileged user namespaces",
                   "sysctl -w kernel.unprivileged_userns_clone=1 user.max_user_namespaces=28633"))
    tun = Path("/dev/net/tun")
    tun_ok = tun.exists() and os.access(tun, os.R_OK | os.W_OK)
    checks.append((tun_ok, "/dev/net/tun readable and writable",
                   "sudo chmod 0666 /dev/net/tun (Debian ships it 0600)"))
    hint = install_hint()
    pasta = shutil.which("pasta")
    slirp = shutil.which("slirp4netns")
    checks.append((pasta is not None, f"pasta: {_version(['pasta', '--version']) if pasta else 'missing'}",
                   hint))
    checks.append((slirp is not None,
                   f"slirp4netns: {_version(['slirp4netns', '--version']) if slirp else 'missing'}", hint))
    user = getpass.getuser()
    for kind in ("subuid", "subgid"):
        entry = subordinate_range(Path(f"/etc/{kind}"), user, os.getuid())
        found = f"{entry[0]}+{entry[1]}" if entry else "no entry"
        checks.append((entry is not None, f"/etc/{kind} for {user}: {found}",
                       f"sudo usermod --add-sub{kind[3:]}s 100000-165535 {user}"))
    for tool in ("newuidmap", "newgidmap"):
        checks.append((shutil.which(tool) is not None, tool, "apt install uidmap"))
    return checks


def check() -> int:
    """Print every check with its fix; exit 0 when a rootless network can be had."""
    checks = results()
    for ok, what, fix in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {what}" + ("" if ok else f"\n      fix: {fix}"))
    helpers = any(ok for ok, what, _ in checks if what.startswith(("pasta", "slirp4netns")))
    essential = all(ok for ok, what, _ in checks if what.startswith(("unprivileged", "/dev/net")))
    return 0 if helpers and essential else 1
