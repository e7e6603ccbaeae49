"""The package as users install it: a wheel (not an editable install) that ships its types."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent
WHEELHOUSE = Path(os.environ.get("CARRIER_WHEELHOUSE", "/opt/carrier/wheels"))

USER_PROGRAM = """
import anyio

import carrier


async def main() -> int:
    ready: carrier.Condition = carrier.all_of(carrier.port(80), carrier.log_line("ready"))
    async with carrier.run("busybox", ["httpd", "-f", "-p", "80"], wait_for=ready) as c:
        container: carrier.Container = c
        host, port = container.published(80)
        print(host.upper(), port + 1)
        outcome: carrier.Outcome = await container.wait()
    reason: carrier.Reason = outcome.reason
    print(reason.value)
    return outcome.exit_code


exit_code: int = anyio.run(main)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with Carrier installed from a wheel built from this source."""
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"no wheelhouse at {WHEELHOUSE}: run scripts/setup (it downloads the wheels)")
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # a private copy: the build writes next to the sources
    shutil.copytree(SOURCE / "carrier", src / "carrier",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(SOURCE / name, src / name)
    dist = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation",
                    "--no-deps", "--no-index", "-w", str(dist), str(src)], check=True)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index",
                    "--find-links", str(WHEELHOUSE), "--find-links", str(dist), "carrier"],
                   check=True)
    return venv


def _mypy(venv: Path, program: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user_program.py"
    path.write_text(textwrap.dedent(program))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         "--python-executable", str(venv / "bin" / "python"), str(path)],
        capture_output=True, text=True, cwd=tmp_path,
    )


class TestWheel:
    def test_wheel_is_a_real_install_with_py_typed(self, installed: Path) -> None:
        """The wheel installs Carrier into site-packages, with its ``py.typed`` marker."""
        out = subprocess.run(
            [str(installed / "bin" / "python"), "-c",
             "import carrier, pathlib; print(pathlib.Path(carrier.__file__).parent)"],
            capture_output=True, text=True, check=True, cwd="/",
        )
        package = Path(out.stdout.strip())
        assert package.is_relative_to(installed), package  # not this checkout, not editable
        assert (package / "py.typed").is_file()

    def test_console_script_runs(self, installed: Path) -> None:
        """The ``carrier`` console script of the wheel starts and prints its help."""
        out = subprocess.run([str(installed / "bin" / "carrier"), "--help"], capture_output=True,
                             text=True, cwd="/")
        assert out.returncode == 0, out.stderr
        assert "Run a command in a new container" in out.stdout

    def test_user_program_type_checks_strictly(self, installed: Path, tmp_path: Path) -> None:
        """``mypy --strict`` accepts a program using ``carrier.run``, ``Container``,
        ``Outcome`` and the readiness conditions from the installed wheel."""
        res = _mypy(installed, USER_PROGRAM, tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr

    def test_mypy_sees_carrier_types(self, installed: Path, tmp_path: Path) -> None:
        """The same check catches a misspelt attribute: the types really come from the wheel."""
        res = _mypy(installed, USER_PROGRAM.replace("outcome.exit_code", "outcome.exit_cod"),
                    tmp_path)
        assert res.returncode == 1
        assert '"Outcome" has no attribute "exit_cod"' in res.stdout
