"""carrier.testing, the pytest plugin: container fixtures, images from a rootfs, leak checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Carrier

import carrier
from carrier.testing import LeakCheck, build_image, no_leftovers

pytestmark = pytest.mark.anyio

INNER = '''
import pytest

import carrier
from carrier.testing import build_image, container_fixture, use

ROOT = {root!r}


@pytest.fixture(scope="{scope}", params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture(scope="{scope}")
def image():
    return build_image({rootfs!r}, "busybox", root=ROOT)


chatty = container_fixture(
    use("image"),
    ["sh", "-c", "for i in $(seq 1 40); do echo line-$i; done; echo ready-now; exec sleep 1000"],
    scope="{scope}", root=ROOT, network="none", log_lines=5,
    wait_for=carrier.log_line("^ready-now$"))


@pytest.mark.anyio
async def test_fails(chatty):
    assert (await chatty.exec(["true"])).exit_code == 1


@pytest.mark.anyio
async def test_passes(chatty):
    assert (await chatty.exec(["true"])).exit_code == 0
'''


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The library-facing tests run on both event loops."""
    return str(request.param)


@pytest.mark.parametrize("scope", ["module", "session"])
def test_failed_test_report_shows_the_container_log(pytester: pytest.Pytester, rootfs_tar: Path,
                                                    carrier_root: Path, scope: str) -> None:
    """A module- or session-scoped container fixture from carrier.testing, under the anyio
    plugin on asyncio and trio, adds its container's last log lines to a failed test's report
    only."""
    pytester.makepyfile(test_inner=INNER.format(root=str(carrier_root), scope=scope,
                                                rootfs=str(rootfs_tar.parent / "rootfs")))
    with no_leftovers(carrier_root):
        result = pytester.runpytest_subprocess("-p", "carrier.testing", "-p", "no:cacheprovider",
                                               "-v")
    result.assert_outcomes(passed=2, failed=2)
    text = result.stdout.str()
    assert text.count("carrier container") == 2, text
    sections = text.split("carrier container")[1:]
    for section in sections:
        shown = section.split("=====")[0]
        assert "last 5 log lines" in shown
        assert "line-37\nline-38\nline-39\nline-40\nready-now" in shown, shown
        assert "line-36" not in shown
    assert "test_fails[asyncio]" in text
    assert "test_fails[trio]" in text


def test_plugin_is_not_loaded_by_installing(pytester: pytest.Pytester) -> None:
    """Without -p carrier.testing or pytest_plugins, a pytest run does not load the plugin."""
    pytester.makepyfile(test_probe='''
def test_probe(pytestconfig):
    assert not pytestconfig.pluginmanager.has_plugin("carrier.testing")
''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


async def test_build_image_from_directory_and_tarball(cli: Carrier, rootfs_tar: Path,
                                                      tmp_path: Path) -> None:
    """build_image imports a rootfs directory (as it is, symlinks included) or a tarball, and
    carrier.run starts containers from either, with no registry."""
    tree = rootfs_tar.parent / "rootfs"
    mine = tmp_path / "mine"
    shutil.copytree(tree, mine, symlinks=True)
    (mine / "etc" / "motd").write_text("from a directory\n")
    assert build_image(mine, "from-dir:1", root=cli.root) == "from-dir:1"
    assert build_image(rootfs_tar, "from-tar", root=cli.root) == "from-tar"
    for image, motd in (("from-dir:1", b"from a directory\n"), ("from-tar", b"")):
        async with carrier.run(image, ["sleep", "100"], root=cli.root, network="none",
                               pull="never", stop_timeout=0.2) as c:
            got = await c.exec(["sh", "-c", "cat /etc/motd 2>/dev/null; readlink /bin/ls"])
            assert got.stdout == motd + b"busybox\n"


def test_leak_check_names_what_was_left(tmp_path: Path) -> None:
    """The leak check carrier.testing exports (and Carrier's own suite uses) names a process
    and runtime state left behind (not what was there before), and passes once they are gone."""
    root = tmp_path / "root"
    (root / "runtime" / "older").mkdir(parents=True)  # a longer-scoped fixture's: not counted
    check = LeakCheck(root)
    assert not check.leftovers()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
    (root / "runtime" / "abc123").mkdir(parents=True)
    try:
        left = check.leftovers(bound=0.2)
        assert proc.pid in left.processes
        assert left.runtime_state == ["abc123"]
        with pytest.raises(AssertionError, match=r"processes left behind.*runtime state left"):
            check.check(bound=0.2)
    finally:
        proc.kill()
        proc.wait()
    (root / "runtime" / "abc123").rmdir()
    check.check()
