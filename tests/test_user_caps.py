"""Capabilities of a non-root user, as Podman 4.3 gives them (measured with podman 4.3.1 and
runc here): the bounding set stays, effective/permitted/inheritable/ambient hold only what
``--cap-add`` names; ``exec -u`` of another non-root user gets none. Rootless, real runc."""

from __future__ import annotations

from pathlib import Path

from conftest import Carrier
from test_security import DEFAULT_CAPS, NET_RAW, bits, one_line_125, status, stored

DEFAULT = set(DEFAULT_CAPS.values())


def _all() -> set[int]:
    return set(range(int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1))


def _caps(fields: dict[str, str]) -> tuple[set[int], ...]:
    """Effective, permitted, inheritable, ambient and bounding sets of a status."""
    return tuple(bits(fields[k]) for k in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"))


def _exec_status(carrier: Carrier, *args: str) -> dict[str, str]:
    res = carrier("exec", *args, "cat", "/proc/self/status")
    assert res.code == 0, res.err
    return dict(line.split(":\t", 1) for line in res.out.splitlines() if ":\t" in line)


def test_non_root_user_has_no_capabilities(carrier: Carrier, image: str) -> None:
    """``-u 1000`` runs with no effective or permitted capability; the bounding set stays."""
    assert _caps(status(carrier, image, "-u", "1000")) == (set(), set(), set(), set(), DEFAULT)


def test_non_root_user_gets_added_capabilities(carrier: Carrier, image: str) -> None:
    """``-u 1000 --cap-add NET_RAW`` gives that user NET_RAW (ambient too, so it survives the
    exec of its command): it opens a raw socket; ``--cap-add ALL`` gives every one."""
    fields = status(carrier, image, "-u", "1000", "--cap-add", "net_raw")
    assert _caps(fields) == ({NET_RAW},) * 4 + (DEFAULT | {NET_RAW},)
    res = carrier("run", "--rm", "--network", "none", "-u", "1000", "--cap-add", "NET_RAW",
                  image, "sysprobe", "raw")
    assert res.out == "ok\n", res
    res = carrier("run", "--rm", "--network", "none", "-u", "1000", image, "sysprobe", "raw")
    assert res.out != "ok\n", res
    assert _caps(status(carrier, image, "-u", "1000", "--cap-add", "ALL")) == (_all(),) * 5
    fields = status(carrier, image, "-u", "1000", "--privileged")  # as Podman: none in effective
    assert _caps(fields) == (set(), set(), set(), set(), _all())


def test_exec_user(carrier: Carrier, image: str) -> None:
    """exec as the container's own user gets its capabilities, ``exec -u 0`` the bounding set,
    and ``exec -u`` of another non-root user none, as Podman."""
    assert carrier("run", "-d", "--name", "r", "--network", "none", "--cap-add", "NET_RAW",
                   image, "sleep", "1000").code == 0
    full = DEFAULT | {NET_RAW}
    assert _caps(_exec_status(carrier, "r"))[:2] == (full, full)
    assert _caps(_exec_status(carrier, "-u", "1000", "r")) == (set(),) * 4 + (full,)
    assert carrier("rm", "-f", "r").code == 0

    assert carrier("run", "-d", "--name", "u", "--network", "none", "-u", "1000",
                   "--cap-add", "NET_RAW", image, "sleep", "1000").code == 0
    assert _caps(_exec_status(carrier, "u")) == ({NET_RAW},) * 4 + (full,)
    assert _caps(_exec_status(carrier, "-u", "1001", "u")) == (set(),) * 4 + (full,)
    assert _caps(_exec_status(carrier, "-u", "0", "u"))[:2] == (full, full)
    assert carrier("rm", "-f", "u").code == 0


def test_bad_cap_add_for_a_user(carrier: Carrier, image: str) -> None:
    """A bad ``--cap-add`` with ``-u``: one line, 125, nothing stored."""
    before = stored(carrier.root)
    one_line_125(carrier("run", "-u", "1000", "--cap-add", "NET_BOGUS", image, "true"))
    assert stored(carrier.root) == before
