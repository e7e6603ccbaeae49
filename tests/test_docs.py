"""docs/library.md's and docs/testcontainers.md's examples run as written, rootless, against
the test image."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Carrier

from carrier.testing import no_leftovers

LIBRARY_MD = Path(__file__).parent.parent / "docs" / "library.md"
TESTCONTAINERS_MD = Path(__file__).parent.parent / "docs" / "testcontainers.md"


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


def split(markdown: str) -> tuple[str, list[str]]:
    """A page's ``# conftest.py`` block and its other python blocks."""
    blocks = python_blocks(markdown)
    conftest = "".join(b for b in blocks if b.startswith("# conftest.py\n"))
    return conftest, [b for b in blocks if not b.startswith("# conftest.py\n")]


CONFTEST, BLOCKS = split(LIBRARY_MD.read_text())
TC_CONFTEST, TC_BLOCKS = split(TESTCONTAINERS_MD.read_text())


def test_the_page_has_examples() -> None:
    """The extraction finds the page's examples (so the parametrized test below is not empty)."""
    assert len(BLOCKS) >= 6
    assert "pytest_plugins" in CONFTEST


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_library_md_example_runs(cli: Carrier, image: str, tmp_path: Path, number: int) -> None:
    """Example *number* of docs/library.md runs exactly as written, with Carrier's default
    root holding the busybox image: as a pytest module (beside the page's conftest.py block)
    when it defines tests, else as a script; it succeeds and leaves nothing behind."""
    run_example(cli, tmp_path, BLOCKS[number], CONFTEST, number)


def test_testcontainers_md_has_five_tests() -> None:
    """docs/testcontainers.md has its conftest.py block and five test modules, each beside its
    testcontainers version in comments."""
    assert "pytest_plugins" in TC_CONFTEST
    assert len(TC_BLOCKS) == 5
    for block in TC_BLOCKS:
        assert re.search(r"^async def test_", block, flags=re.M)
        assert "# from testcontainers" in block


@pytest.mark.parametrize("number", range(len(TC_BLOCKS)))
def test_testcontainers_md_example_runs(cli: Carrier, image: str, tmp_path: Path,
                                        number: int) -> None:
    """Test module *number* of docs/testcontainers.md passes as written, rootless, with the
    busybox image in Carrier's default root, and leaves nothing behind."""
    run_example(cli, tmp_path, TC_BLOCKS[number], TC_CONFTEST, number)


def run_example(cli: Carrier, tmp_path: Path, code: str, conftest: str, number: int) -> None:
    """Run one example block: as a pytest module (with the page's conftest.py) when it
    defines tests, else as a script; it must succeed and leave nothing behind."""
    is_tests = re.search(r"^(async )?def test_", code, flags=re.M) is not None
    work = tmp_path / "work"
    work.mkdir()
    source = work / (f"test_example_{number}.py" if is_tests else f"example_{number}.py")
    source.write_text(code)
    if is_tests:
        (work / "conftest.py").write_text(conftest)
    argv = ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", source.name]
            if is_tests else [sys.executable, source.name])
    with no_leftovers(cli.root):
        proc = subprocess.run(argv, cwd=work, env=cli.env, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 0, f"example {number}:\n{code}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    if is_tests:  # every test ran: none skipped (an async test without the anyio mark is)
        assert " passed" in proc.stdout, proc.stdout
        assert "skipped" not in proc.stdout, proc.stdout
