"""Choosing the network helper for ``--network MODE``: pasta preferred, slirp4netns the fallback,
and the command that installs them when neither is there."""

from __future__ import annotations

from pathlib import Path

from .._util._errors import CarrierError
from ._helper import Helper


def install_hint(os_release: Path = Path("/etc/os-release")) -> str:
    """The command that installs both helpers on this distribution."""
    ids: set[str] = set()
    try:
        for line in os_release.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("ID", "ID_LIKE"):
                ids.update(value.strip().strip('"').split())
    except OSError:
        pass
    if ids & {"fedora", "rhel", "centos", "rocky", "almalinux"}:
        return "dnf install passt slirp4netns"
    if ids & {"arch", "manjaro"}:
        return "pacman -S passt slirp4netns"
    if ids & {"opensuse", "suse", "sles", "opensuse-tumbleweed"}:
        return "zypper install passt slirp4netns"
    return "apt install passt slirp4netns"


def choose(mode: str, *, os_release: Path = Path("/etc/os-release")) -> Helper | None:
    """The helper for ``--network MODE``: auto prefers pasta; none and host need none."""
    from ._pasta import Pasta
    from ._slirp4netns import Slirp4netns

    if mode in ("none", "host"):
        return None
    kinds: dict[str, type[Helper]] = {"pasta": Pasta, "slirp4netns": Slirp4netns}
    if mode == "auto":
        for kind in kinds.values():
            if kind.available():
                return kind()
        raise CarrierError(
            f"no network helper found (pasta or slirp4netns): {install_hint(os_release)}"
        )
    if mode not in kinds:
        raise CarrierError(
            f"invalid network mode {mode!r}: use auto, pasta, slirp4netns, none or host"
        )
    if not kinds[mode].available():
        raise CarrierError(f"network helper {mode} is not installed: {install_hint(os_release)}")
    return kinds[mode]()
