"""Resource limits: --ulimit (rootless, up to the caller's hard limits), and --pids-limit,
--memory and --cpus, which are refused rootless here (no cgroup of the container's own) and
set in the container's cgroup as root."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
from conftest import Carrier, Result

import carrier as carrier_lib


def stored(root: Path) -> list[str]:
    """What the Carrier root holds for containers: their directories and names."""
    return sorted(p.name for d in ("containers", "names") if (root / d).exists()
                  for p in (root / d).iterdir())


def one_line_125(res: Result) -> None:
    """The result is one ``carrier:`` line on stderr and exit code 125."""
    assert res.code == 125, res
    assert len(res.err.splitlines()) == 1, res
    assert res.err.startswith("carrier: "), res


class TestUlimit:
    def test_soft_and_hard(self, carrier: Carrier, image: str) -> None:
        """--ulimit NAME=SOFT:HARD sets both limits of the command (and of exec); NAME=N sets
        both to N. (runc 1.1's exec leaves NOFILE's soft limit at the hard one: runc#4195.)"""
        res = carrier("run", "--rm", "--network", "none", "--ulimit", "nofile=100:200",
                      "--ulimit", "nproc=50", image, "sh", "-c",
                      "ulimit -Sn; ulimit -Hn; ulimit -Su; ulimit -Hu")
        assert (res.code, res.out.split()) == (0, ["100", "200", "50", "50"]), res.err
        assert carrier("run", "-d", "--name", "u", "--network", "none", "--ulimit",
                       "nofile=64:128", "--ulimit", "nproc=40:60", image, "sleep", "1000").code == 0
        res = carrier("exec", "u", "sh", "-c", "ulimit -Hn; ulimit -Su; ulimit -Hu")
        assert res.out.split() == ["128", "40", "60"], res
        assert carrier("rm", "-f", "u").code == 0

    def test_above_our_hard_limit(self, carrier: Carrier, image: str) -> None:
        """A hard limit above the caller's own is one line and 125: a rootless container
        cannot raise it, and nothing is stored."""
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        assert hard != resource.RLIM_INFINITY
        for command in ("run", "create"):
            for value in (f"nofile={hard + 1}", f"nofile=10:{hard + 1}", "nofile=-1"):
                res = carrier(command, "--ulimit", value, image, "true")
                one_line_125(res)
                assert "above this user's" in res.err
        assert stored(carrier.root) == []

    def test_bad_ulimit(self, carrier: Carrier, image: str) -> None:
        """An unknown name, a non-number or a soft limit above the hard one is one line and
        125; nothing is stored."""
        for value in ("bogus=1", "nofile", "nofile=", "nofile=ten", "nofile=20:10", "=5"):
            for command in ("run", "create"):
                res = carrier(command, "--ulimit", value, image, "true")
                one_line_125(res)
                assert f"invalid --ulimit {value!r}" in res.err
        assert stored(carrier.root) == []


class TestCgroupLimits:
    def test_refused_rootless(self, carrier: Carrier, image: str) -> None:
        """--pids-limit, --memory and --cpus are refused rootless with one line saying why
        (never ignored), exit 125, and nothing is stored."""
        for option, value in (("--pids-limit", "50"), ("--memory", "64m"), ("-m", "1g"),
                              ("--cpus", "0.5")):
            for command in ("run", "create"):
                res = carrier(command, option, value, image, "true")
                one_line_125(res)
                assert "cannot be enforced" in res.err, res
                assert "cgroup" in res.err, res
        assert stored(carrier.root) == []

    def test_bad_values(self, carrier: Carrier, image: str) -> None:
        """A malformed limit is one line naming it and 125, before any other reason."""
        for option, value in (("--pids-limit", "0"), ("--pids-limit", "-5"),
                              ("--memory", "lots"), ("--memory", "1k"), ("--cpus", "0"),
                              ("--cpus", "1000")):
            res = carrier("run", option, value, image, "true")
            one_line_125(res)
            assert f"invalid {option}" in res.err, res
        assert stored(carrier.root) == []

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
    async def test_library(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """carrier.run takes ulimit as the CLI does and refuses memory rootless by name."""
        out = tmp_path / "out"
        with out.open("wb") as f:
            async with carrier_lib.run(image, ["sh", "-c", "ulimit -Sn; ulimit -Hn"],
                                       root=carrier.root, network="none",
                                       ulimit=["nofile=90:180"],
                                       stdio=carrier_lib.Stdio(stdout=f)) as c:
                assert (await c.wait()).exit_code == 0
        assert out.read_text().split() == ["90", "180"]
        with pytest.raises(carrier_lib.CarrierError, match="--memory cannot be enforced"):
            async with carrier_lib.run(image, ["true"], root=carrier.root, memory="64m"):
                pass
        with pytest.raises(carrier_lib.CarrierError, match="invalid ulimit"):
            async with carrier_lib.run(image, ["true"], root=carrier.root,
                                       ulimit="nofile=1"):
                pass
        assert stored(carrier.root) == []


def _cgroup_file(pid: int, controller: str, name: str) -> str:
    """The value of *name* in *pid*'s cgroup of the v1 *controller* (or the v2 hierarchy)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return (Path("/sys/fs/cgroup") / controller / path.lstrip("/") / name).read_text()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            v2 = {"memory.limit_in_bytes": "memory.max", "pids.max": "pids.max",
                  "cpu.cfs_quota_us": "cpu.max"}[name]
            return (Path("/sys/fs/cgroup") / line[3:].lstrip("/") / v2).read_text()
    raise AssertionError(f"no {controller} cgroup for {pid}")


@pytest.mark.root
def test_cgroup_limits_as_root(carrier: Carrier, image: str) -> None:
    """As root, --memory, --pids-limit and --cpus are written into the container's cgroup."""
    res = carrier("run", "-d", "--name", "l", "--network", "none", "--memory", "64m",
                  "--pids-limit", "50", "--cpus", "0.5", image, "sleep", "1000")
    assert res.code == 0, res.err
    pid = carrier.record("l")["container_pid"]
    assert isinstance(pid, int)
    assert int(_cgroup_file(pid, "memory", "memory.limit_in_bytes").split()[0]) == 64 << 20
    assert _cgroup_file(pid, "pids", "pids.max").strip() == "50"
    assert _cgroup_file(pid, "cpu", "cpu.cfs_quota_us").split()[0] == "50000"
    assert carrier("rm", "-f", "l").code == 0


@pytest.mark.root
def test_cgroup_limits_refused_with_fuse_overlayfs(carrier: Carrier, image: str) -> None:
    """As root with fuse-overlayfs, where runc runs inside the user namespace and could not
    write the cgroup, a limit is refused (one line, 125) rather than ignored."""
    for option, value in (("--memory", "64m"), ("--pids-limit", "50"), ("--cpus", "1")):
        res = carrier("run", "--storage-driver", "fuse-overlayfs", option, value, image, "true")
        one_line_125(res)
        assert f"{option} cannot be enforced with the fuse-overlayfs" in res.err, res
    assert stored(carrier.root) == []
