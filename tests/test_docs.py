"""docs/library.md's examples run as written, rootless, against the test image."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Carrier

from carrier.testing import no_leftovers

LIBRARY_MD = Path(__file__).parent.parent / "docs" / "library.md"


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


ALL = python_blocks(LIBRARY_MD.read_text())
CONFTEST = "".join(b for b in ALL if b.startswith("# conftest.py\n"))
BLOCKS = [b for b in ALL if not b.startswith("# conftest.py\n")]


def test_the_page_has_examples() -> None:
    """The extraction finds the page's examples (so the parametrized test below is not empty)."""
    assert len(BLOCKS) >= 6
    assert "pytest_plugins" in CONFTEST


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_library_md_example_runs(cli: Carrier, image: str, tmp_path: Path, number: int) -> None:
    """Example *number* of docs/library.md runs exactly as written, with Carrier's default
    root holding the busybox image: as a pytest module (beside the page's conftest.py block)
    when it defines tests, else as a script; it succeeds and leaves nothing behind."""
    code = BLOCKS[number]
    is_tests = re.search(r"^(async )?def test_", code, flags=re.M) is not None
    work = tmp_path / "work"
    work.mkdir()
    source = work / (f"test_example_{number}.py" if is_tests else f"example_{number}.py")
    source.write_text(code)
    if is_tests:
        (work / "conftest.py").write_text(CONFTEST)
    argv = ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", source.name]
            if is_tests else [sys.executable, source.name])
    with no_leftovers(cli.root):
        proc = subprocess.run(argv, cwd=work, env=cli.env, capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 0, f"example {number}:\n{code}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
