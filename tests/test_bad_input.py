"""Bad input, through the real command line: one line naming the problem, exit code 125, no
traceback, and nothing already stored changes. Also the small Docker behaviours around them."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import BUSYBOX, Carrier, make_rootfs_tar

_LONG = "x" * 64
_DEEP = "/".join(["a"] * 2100)  # 4,200 characters: past PATH_MAX

BAD = [
    (["run", "--rm", "--pull", "never", "no-such-image", "true"], "no such image"),
    (["run", "--rm", "127.0.0.1:9/no-such-image", "true"], "127.0.0.1:9"),  # refused
    (["run", "--rm", "--pull", "sometimes", "busybox", "true"], "--pull"),
    (["run", "--rm", "--storage-driver", "zfs", "busybox", "true"], "storage driver"),
    (["run", "--rm", "-e", "=oops", "busybox", "true"], "invalid environment variable"),
    (["run", "--rm", "-w", "relative", "busybox", "true"], "working directory"),
    (["run", "--rm", "--runtime", "no-such-runtime", "busybox", "true"], "runtime"),
    (["run", "--rm", "--name", "bad/name", "busybox", "true"], "invalid container name"),
    (["stop", "ghost"], "no such container"),
    (["rm", "ghost"], "no such container"),
    (["logs", "ghost"], "no such container"),
    (["import", "/nonexistent.tar", "x"], "cannot read"),
    (["import", "/etc/hostname", "x"], "not a tar archive"),
    (["import", "/etc/hostname", "Bad:Name:"], "invalid reference format"),
    (["import", "/etc", "x"], "takes a tarball"),
    (["run", "--no-such-flag", "busybox"], "no-such-flag"),
    # Lines injected into resolv.conf or hosts (issue #12, item 16).
    (["run", "--rm", "--dns-search", "a\nnameserver 6.6.6.6", "busybox", "true"], "--dns-search"),
    (["run", "--rm", "--dns-search", "a b", "busybox", "true"], "--dns-search"),
    (["run", "--rm", "--dns-option", "ndots:1\nnameserver 6.6.6.6", "busybox", "true"],
     "--dns-option"),
    (["run", "--rm", "--dns-option", "a b", "busybox", "true"], "--dns-option"),
    (["run", "--rm", "--add-host", "x\n6.6.6.6 evil:1.2.3.4", "busybox", "true"], "--add-host"),
    (["run", "--rm", "--add-host", "a b:1.2.3.4", "busybox", "true"], "--add-host"),
    (["run", "--rm", "--hostname", "h\n6.6.6.6 evil", "busybox", "true"], "--hostname"),
    (["run", "--rm", "--hostname", "a b", "busybox", "true"], "--hostname"),
    (["run", "--rm", "--hostname", _LONG, "busybox", "true"], "--hostname"),
    # Numbers and durations (item 17): one syntax, checked before anything is stored.
    (["run", "--rm", "--stop-timeout", "nan", "busybox", "true"], "--stop-timeout"),
    (["run", "--rm", "--stop-timeout", "inf", "busybox", "true"], "--stop-timeout"),
    (["run", "--rm", "--stop-timeout=-1", "busybox", "true"], "--stop-timeout"),
    (["run", "--rm", "--stop-timeout", "10x", "busybox", "true"], "--stop-timeout"),
    (["run", "--rm", "--stop-timeout", "99999999999", "busybox", "true"], "--stop-timeout"),
    (["run", "--rm", "--restart-delay=-1s", "busybox", "true"], "--restart-delay"),
    (["run", "--rm", "--restart", "always", "--restart-period", "0", "busybox", "true"],
     "--restart-period"),
    (["run", "--rm", "--restart-intensity", "0", "busybox", "true"], "--restart-intensity"),
    (["run", "--rm", "--health-cmd", "true", "--health-interval", "0s", "busybox", "true"],
     "--health-interval"),
    (["run", "--rm", "--health-cmd", "true", "--health-timeout", "nan", "busybox", "true"],
     "--health-timeout"),
    (["run", "--rm", "--health-cmd", "true", "--health-retries", "0", "busybox", "true"],
     "--health-retries"),
    (["run", "--rm", "--mtu", "99999", "busybox", "true"], "--mtu"),
    (["stop", "-t", "nan", "ghost"], "-t/--time"),
    # Smaller ones (item 20).
    (["stop"], "at least one container"),
    (["rm"], "at least one container"),
    (["run", "--rm", "-p", "10.9.9.9:18080:80", "busybox", "true"], "not an address of this host"),
    (["run", "--rm", "-u", "nosuchuser", "busybox", "true"], "unable to find user nosuchuser"),
    (["system", "prune"], "-f"),  # stdin is not a terminal: never deletes without asking
    (["ps", "json"], "unexpected argument 'json'"),  # options are never taken by position
    (["images", "json"], "unexpected argument 'json'"),
    (["pull", "busybox", "linux/amd64"], "unexpected argument 'linux/amd64'"),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every state file under the root with its contents (trees and the storage-probe cache
    excluded)."""
    snap = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        trees = ("rootfs", "upper", "work")
        if any(t in rel.parts for t in trees) or rel.parts[0] == "layers" or path.is_dir() \
                or rel.name == "storage.json":
            continue
        snap[str(rel)] = path.read_bytes() if path.is_file() else b"link:" + os.readlink(path).encode()
    return snap


def _user_threads() -> int:
    """Threads of every process of this user (what RLIMIT_NPROC counts)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(os.getuid())]:
            total += int(fields.get("Threads", "1"))
    return total


def _one_line(res_err: str) -> str:
    lines = res_err.strip().splitlines()
    assert len(lines) == 1, res_err
    assert lines[0].startswith("carrier: "), res_err
    assert "Traceback" not in res_err
    return lines[0]


class TestBadInput:
    @pytest.mark.parametrize(("args", "needle"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
    def test_one_line_125_and_store_unchanged(
        self, carrier: Carrier, image: str, args: list[str], needle: str
    ) -> None:
        """Bad input: exit 125, one line naming the problem, no traceback, store unchanged."""
        assert carrier("run", "--name", "kept", image, "true").code == 0  # something stored
        before = _snapshot(carrier.root)
        res = carrier(*args)
        assert res.code == 125, res.err
        assert needle in _one_line(res.err)
        assert _snapshot(carrier.root) == before
        carrier("rm", "kept")

    def test_layer_deeper_than_path_max(self, carrier: Carrier, image: str, tmp_path: Path) -> None:
        """A layer entry deeper than the system's path limit is refused in one line, where
        unpacking it used to recurse until Python gave up."""
        tar_path = tmp_path / "deep.tar"
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"{_DEEP}/f")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
        before = _snapshot(carrier.root)
        res = carrier("import", str(tar_path), "deep")
        assert res.code == 125
        assert "longer than the system allows" in _one_line(res.err)
        assert _snapshot(carrier.root) == before


class TestRuntimeFailure:
    def test_runtime_that_fails_before_the_command(self, carrier: Carrier, image: str) -> None:
        """A runtime that exits before the command runs is Carrier's failure: one line and 125,
        never its exit status passed off as the container's."""
        res = carrier("run", "--rm", "--runtime", "/bin/false", image, "true")
        assert res.code == 125
        assert "failed before the command started (exit status 1)" in _one_line(res.err)
        assert not any((carrier.root / "containers").iterdir())

    def test_process_limit_too_low(self, carrier: Carrier, image: str) -> None:
        """A user process limit that leaves runc no room is one line and 125 (runc itself
        would die mid-start with a page of Go runtime errors)."""
        # The limit counts every thread of this user: leave room for the commands themselves
        # (20), but not for a container (about 32).
        used = _user_threads() + 20
        res = carrier("run", "--rm", image, "true", prefix=["prlimit", f"--nproc={used}:{used}"])
        assert res.code == 125, res.err
        assert "ulimit -u" in _one_line(res.err)


class TestDockerBehaviours:
    def test_rm_force_removes_the_rest_and_reports_the_missing(
        self, carrier: Carrier, image: str
    ) -> None:
        """``rm -f a missing`` removes ``a`` and reports ``missing`` in one line, exit 125."""
        assert carrier("run", "-d", "--name", "a", image, "sleep", "100").code == 0
        res = carrier("rm", "-f", "a", "missing")
        assert res.code == 125
        assert res.out == "a\n"
        assert "no such container: missing" in _one_line(res.err)
        assert carrier("ps", "-a", "--format", "json").out.strip() == "[]"

    def test_exec_into_an_ended_container(self, carrier: Carrier, image: str) -> None:
        """``exec`` into a container that has exited says so, in one line."""
        assert carrier("run", "--name", "ended", image, "sh", "-c", "exit 4").code == 4
        res = carrier("exec", "ended", "true")
        assert res.code == 125
        assert "has exited (code 4)" in _one_line(res.err)
        carrier("rm", "ended")

    def test_empty_entrypoint_clears_it(self, carrier: Carrier, tmp_path: Path) -> None:
        """``--entrypoint ""`` clears the image's entrypoint; the command line is the command."""
        rootfs_tar = make_rootfs_tar(tmp_path)
        assert carrier("import", str(rootfs_tar), "ep").code == 0
        res = carrier("run", "--rm", "--entrypoint", "", "ep", "echo", "plain")
        assert (res.code, res.out) == (0, "plain\n"), res.err
        res = carrier("run", "--rm", "--entrypoint", "", "ep")
        assert res.code == 125
        assert "no command" in _one_line(res.err)

    def test_user_gets_the_images_supplementary_groups(
        self, carrier: Carrier, tmp_path: Path
    ) -> None:
        """``-u nobody`` gets nobody's groups from the image's /etc/group, and never the
        invoking user's own group (which reads as root, 0, inside)."""
        tree = tmp_path / "rootfs"
        tree.mkdir()
        subprocess.run(["tar", "-C", str(tree), "-xf", str(make_rootfs_tar(tmp_path / "x"))],
                       check=True)
        (tree / "etc" / "group").write_text(
            "root:x:0:\nwheel:x:10:nobody\nstaff:x:50:nobody,root\nnobody:x:65534:\n")
        tar_path = tmp_path / "groups.tar"
        subprocess.run(["tar", "-C", str(tree), "-cf", str(tar_path), "."], check=True)
        assert carrier("import", str(tar_path), "groups").code == 0
        res = carrier("run", "--rm", "-u", "nobody", "groups", "id", "-G")
        assert (res.code, res.out) == (0, "65534 10 50\n"), res.err
        res = carrier("run", "--rm", "-u", "nobody:staff", "groups", "id", "-G")
        assert (res.code, res.out) == (0, "50 10\n"), res.err
        res = carrier("run", "--rm", "groups", "id", "-G")
        assert (res.code, res.out) == (0, "0 50\n"), res.err

    def test_help_has_no_generated_negative_flags(self, carrier: Carrier) -> None:
        """Help shows flags as Docker spells them: no ``--no-rm`` or ``--no-no-network``."""
        for command in ("run", "ps", "rm", "exec", "up", "pull"):
            res = carrier(command, "--help")
            assert res.code == 0, res.err
            flags = {w for w in res.out.split() if w.startswith("--no-")}
            assert flags <= {"--no-network", "--no-tls-verify", "--no-trunc"}, (command, flags)
        assert carrier("run", "--no-rm", "busybox", "true").code == 125

    def test_every_option_has_a_help_line(self, carrier: Carrier) -> None:
        """Every option of every command (the subcommands' too) says what it does in --help,
        beyond its default and choices."""
        listed = carrier("--help").out
        commands = [line.split()[1] for line in listed.splitlines()
                    if re.match(r"^│ [a-z]", line)]
        assert {"run", "ps", "network", "kube"} <= set(commands), commands
        missing = []
        for command in commands:
            res = carrier(command, "--help")
            subs = [line.split()[1] for line in res.out.splitlines()
                    if re.match(r"^│ [a-z]", line)] if "Commands" in res.out else []
            for argv in [[command]] if not subs else [[command, sub] for sub in subs]:
                res = carrier(*argv, "--help", timeout=60)
                assert res.code == 0, (argv, res.err)
                for line in res.out.splitlines():
                    m = re.match(r"^│ +(\*? *-[-\w]+(?: [-\w]+)*(?: [A-Z]+(?:\.\.\.)?)?) {2,}(.*?)\s*│$",
                                 line)
                    if m and (not m[2] or m[2].startswith(("[default", "[choices"))):
                        missing.append((*argv, m[1].strip()))
        assert not missing, missing

    def test_warnings_are_plain_lines_when_piped(self, carrier: Carrier, tmp_path: Path) -> None:
        """A warning on a stderr that is not a terminal is a plain line, not JSON."""
        tar_path = tmp_path / "dev.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(BUSYBOX, arcname="bin/busybox")
            info = tarfile.TarInfo("dev/null")
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info)
        res = carrier("import", str(tar_path), "dev")
        assert res.code == 0, res.err
        assert "device" in res.err
        assert not res.err.lstrip().startswith("{"), res.err
