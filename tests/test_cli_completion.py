"""Shell completion (``carrier completion bash|zsh|fish``) loaded by the real shells, and the
man page (``scripts/man``) rendered by ``man``, both generated from the app itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Carrier

REPO = Path(__file__).parent.parent


def complete_bash(script: Path, *words: str) -> list[str]:
    """What bash completes for the command line *words* (the last one being completed), with
    the completion function that *script* registers for ``carrier``."""
    program = f"""
source {script}
spec=$(complete -p carrier) || exit 3
func=$(sed -E 's/.*-F ([^ ]+) .*/\\1/' <<<"$spec")
COMP_WORDS=({' '.join(words)})
COMP_CWORD={len(words) - 1}
COMP_LINE="{' '.join(words)}"
COMP_POINT=${{#COMP_LINE}}
"$func" carrier "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True,
                         text=True, timeout=30, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


class TestCompletion:
    def test_bash_completes_commands_and_options(self, carrier: Carrier, tmp_path: Path) -> None:
        """The bash script loads in bash, registers a function for carrier, and completes
        `carrier ru` to run, `carrier volume i` to inspect and `carrier ps --fo` to --format."""
        res = carrier("completion", "bash")
        assert res.code == 0, res.err
        script = tmp_path / "carrier.bash"
        script.write_text(res.out)
        assert complete_bash(script, "carrier", "ru") == ["run"]
        assert "inspect" in complete_bash(script, "carrier", "volume", "i")
        assert "--format" in complete_bash(script, "carrier", "ps", "--fo")
        assert "save" in complete_bash(script, "carrier", "s")

    @pytest.mark.parametrize("shell", ["zsh", "fish"])
    def test_zsh_and_fish_scripts_parse(self, carrier: Carrier, tmp_path: Path,
                                        shell: str) -> None:
        """The zsh and fish scripts name carrier's commands and are accepted by that shell's
        own parser (zsh -n, fish --no-execute)."""
        assert shutil.which(shell), f"{shell} is installed by scripts/setup"
        res = carrier("completion", shell)
        assert res.code == 0, res.err
        assert "unpause" in res.out
        script = tmp_path / f"carrier.{shell}"
        script.write_text(res.out)
        check = [shell, "-n", str(script)] if shell == "zsh" else [shell, "--no-execute", str(script)]
        parsed = subprocess.run(check, capture_output=True, text=True, timeout=30, check=False,
                                env={**os.environ, "HOME": str(tmp_path)})
        assert parsed.returncode == 0, parsed.stderr

    def test_unknown_shell(self, carrier: Carrier) -> None:
        """A shell Carrier has no script for is one line, exit 125."""
        res = carrier("completion", "tcsh")
        assert res.code == 125
        assert res.err.startswith("carrier: ")
        assert res.err.count("\n") == 1
        assert res.out == ""


def test_man_page_renders(tmp_path: Path) -> None:
    """scripts/man writes a man page that man renders without a warning: its NAME line and
    the commands with their help, down to the subcommands' options."""
    page = tmp_path / "carrier.1"
    env = {**os.environ, "PYTHON": sys.executable}
    made = subprocess.run([str(REPO / "scripts" / "man"), str(page)], capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert made.returncode == 0, made.stderr
    if shutil.which("man") is None:
        pytest.skip("man is not installed: the page was written but not rendered")
    shown = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                           check=False, env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": ""})
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    text = shown.stdout
    assert "carrier - rootless Linux containers, run and supervised from Python" in text
    for expected in ("Give image SOURCE more names", "Save images to a tar archive",
                     "Pause running containers", "--format", "volume inspect"):
        assert expected in text, expected
    generated = {"--no-internal", "--empty-label", "--no-force", "--no-down", "--no-quiet"}
    assert not {flag for flag in generated if flag in text}, "generated negative flags shown"
