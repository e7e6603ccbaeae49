"""Process options of run and create: --env-file, --label and --init (CLI and library), run
rootless against real containers."""

from __future__ import annotations

import json
import os
import shutil
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


class TestEnvFile:
    def test_docker_format(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """--env-file reads Docker's format (values as written, comments, a bare KEY from our
        environment, an unset bare KEY left out), and -e overrides it."""
        env_file = tmp_path / "env"
        env_file.write_text("\ufeff# a comment\n\n  A=one two \nB=\"quoted\"\r\nC=x=y\nFROM_HOST\n"
                            "UNSET_ONE\nD=file\n")
        carrier.env["FROM_HOST"] = "host value"
        res = carrier("run", "--rm", "--network", "none", "--env-file", str(env_file),
                      "-e", "D=flag", image, "sh", "-c",
                      'echo "[$A][$B][$C][$FROM_HOST][${UNSET_ONE-unset}][$D]"')
        assert (res.code, res.out) == (0, '[one two ][\"quoted\"][x=y][host value][unset][flag]\n'), res.err

    def test_bad_env_file(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """A missing env file, one with a nameless or spaced variable, or not UTF-8, is one
        line and 125, and no container is stored."""
        bad = {"nameless": b"=value\n", "spaced": b"MY VAR=1\n", "binary": b"A=\xff\n"}
        paths = [str(tmp_path / "missing")]
        for name, content in bad.items():
            (tmp_path / name).write_bytes(content)
            paths.append(str(tmp_path / name))
        for path in paths:
            for command in ("run", "create"):
                res = carrier(command, "--env-file", path, image, "true")
                one_line_125(res)
                assert f"--env-file {path}" in res.err
        assert stored(carrier.root) == []


class TestLabel:
    def test_labels_stored_and_filtered(self, carrier: Carrier, image: str) -> None:
        """--label/-l values are stored: info and ps --format json show them, and
        ps --filter label= selects by them."""
        assert carrier("create", "--name", "a", "--label", "tier=web", "-l", "flag",
                       image, "true").code == 0
        assert carrier("create", "--name", "b", "-l", "tier=db", image, "true").code == 0
        assert carrier.record("a")["spec"]["labels"] == {"tier": "web", "flag": ""}  # type: ignore[index]
        listed = json.loads(carrier("ps", "-a", "--format", "json").out)
        assert {c["Names"][0]: c["Labels"] for c in listed} == {
            "a": {"tier": "web", "flag": ""}, "b": {"tier": "db"}}
        assert carrier("ps", "-a", "--filter", "label=tier=web", "--format", "json").out.count(
            '"Names"') == 1
        res = carrier("ps", "-aq", "--filter", "label=flag")
        assert res.out.split() == [json.loads(carrier("ps", "-a", "--format", "json").out)[0]["Id"][:12]]
        assert carrier("rm", "a", "b").code == 0

    def test_bad_label(self, carrier: Carrier, image: str) -> None:
        """A label without a key, or with a space in it, is one line and 125; nothing stored."""
        for bad in ("=v", "a b=c"):
            res = carrier("create", "--label", bad, image, "true")
            one_line_125(res)
            assert f"invalid label {bad!r}" in res.err
        assert stored(carrier.root) == []


def path_without_catatonit(tmp_path: Path) -> str:
    """A PATH with every command of this machine's PATH but catatonit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(":"):
        if not os.path.isdir(directory):
            continue
        for entry in os.listdir(directory):
            if entry != "catatonit" and not (bin_dir / entry).exists():
                (bin_dir / entry).symlink_to(os.path.join(directory, entry))
    return str(bin_dir)


class TestInit:
    def test_init_is_pid_1_and_stops_at_once(self, carrier: Carrier, image: str) -> None:
        """With --init, catatonit is PID 1 and the command its child, so SIGTERM stops a command
        that ignores it as PID 1 at once (exit 143, not the SIGKILL after the timeout)."""
        assert shutil.which("catatonit"), "scripts/setup installs catatonit"
        assert carrier("run", "-d", "--init", "--name", "i", "--stop-timeout", "10m",
                       image, "sleep", "1000").code == 0
        res = carrier("exec", "i", "cat", "/proc/1/cmdline")
        assert res.out == "/run/carrier-init\x00--\x00sleep\x001000\x00", res
        assert carrier("exec", "i", "sh", "-c", "echo hi > /run/carrier-init").code != 0  # read-only
        res = carrier("stop", "i")  # would wait ten minutes (past this call's timeout) without init
        assert res.code == 0, res.err
        record = carrier.record("i")
        assert (record["status"], record["exit_code"]) == ("exited", 143)
        ps = json.loads(carrier("ps", "-a", "--format", "json").out)
        assert ps[0]["Command"] == ["sleep", "1000"]  # the user's command, as Podman shows it
        assert carrier("rm", "i").code == 0

    def test_init_missing(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """--init without catatonit on PATH is one line and 125, and nothing is stored."""
        carrier.env["PATH"] = path_without_catatonit(tmp_path)
        for command in ("run", "create"):
            res = carrier(command, "--init", image, "true")
            one_line_125(res)
            assert "catatonit" in res.err
        assert stored(carrier.root) == []

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
    async def test_library_init(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """carrier.run(init=True) makes catatonit PID 1; a non-bool init is refused by name."""
        out = tmp_path / "out"
        with out.open("wb") as f:
            async with carrier_lib.run(image, ["cat", "/proc/1/cmdline"], root=carrier.root,
                                       network="none", init=True,
                                       stdio=carrier_lib.Stdio(stdout=f)) as c:
                assert (await c.wait()).exit_code == 0
        assert out.read_bytes() == b"/run/carrier-init\x00--\x00cat\x00/proc/1/cmdline\x00"
        with pytest.raises(carrier_lib.CarrierError, match="invalid init"):
            async with carrier_lib.run(image, ["true"], root=carrier.root,
                                       init="yes"):  # type: ignore[arg-type]
                pass
        assert stored(carrier.root) == []
