"""``inspect`` shows a container's security options, limits and stdin/terminal settings in
Podman's fields (HostConfig.CapAdd/CapDrop/Privileged/SecurityOpt/Ulimits/PidsLimit/Memory/
NanoCpus, Config.Tty/OpenStdin), read from the record; the values Podman 4.3.1 shows for the
same options (measured here)."""

from __future__ import annotations

import json

import pytest
from conftest import Carrier

KEYS = ("CapAdd", "CapDrop", "Privileged", "SecurityOpt", "Ulimits", "PidsLimit", "Memory",
        "NanoCpus")


def _inspect(carrier: Carrier, name: str) -> dict[str, object]:
    res = carrier("inspect", name)
    assert res.code == 0, res.err
    (data,) = json.loads(res.out)
    assert isinstance(data, dict)
    return data


def _host(carrier: Carrier, name: str) -> dict[str, object]:
    host = _inspect(carrier, name)["HostConfig"]
    assert isinstance(host, dict)
    return {k: host[k] for k in KEYS}


def test_defaults(carrier: Carrier, image: str) -> None:
    """A plain container: Podman's CapDrop against Docker's set, nothing else set."""
    assert carrier("create", "--name", "d", image, "sh").code == 0
    assert _host(carrier, "d") == {
        "CapAdd": [], "CapDrop": ["CAP_AUDIT_WRITE", "CAP_MKNOD", "CAP_NET_RAW"],
        "Privileged": False, "SecurityOpt": [], "Ulimits": [], "PidsLimit": 0, "Memory": 0,
        "NanoCpus": 0}
    config = _inspect(carrier, "d")["Config"]
    assert isinstance(config, dict)
    assert (config["Tty"], config["OpenStdin"]) == (False, False)
    assert carrier("rm", "d").code == 0


def test_options_shown(carrier: Carrier, image: str) -> None:
    """--cap-add/--cap-drop, --security-opt, --ulimit and -ti show as Podman shows them, and
    a Go template reads them."""
    assert carrier("create", "--name", "o", "--cap-add", "net_raw", "--cap-add", "SYS_ADMIN",
                   "--cap-drop", "CHOWN", "--security-opt", "no-new-privileges",
                   "--security-opt", "seccomp=unconfined", "--ulimit", "nofile=1024:2048",
                   "--ulimit", "core=-1", "-ti", image, "sh").code == 0
    assert _host(carrier, "o") == {
        "CapAdd": ["CAP_SYS_ADMIN"], "CapDrop": ["CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_MKNOD"],
        "Privileged": False, "SecurityOpt": ["no-new-privileges", "seccomp=unconfined"],
        "Ulimits": [{"Name": "RLIMIT_NOFILE", "Soft": 1024, "Hard": 2048},
                    {"Name": "RLIMIT_CORE", "Soft": -1, "Hard": -1}],
        "PidsLimit": 0, "Memory": 0, "NanoCpus": 0}
    res = carrier("inspect", "--format", "{{.Config.Tty}} {{.Config.OpenStdin}} "
                  "{{.HostConfig.Privileged}} {{len .HostConfig.CapDrop}}", "o")
    assert res.out == "true true false 3\n", res
    assert carrier("create", "--name", "all", "--cap-drop", "ALL", "--cap-add", "KILL",
                   image, "sh").code == 0
    host = _host(carrier, "all")
    assert host["CapAdd"] == []
    assert "CAP_KILL" not in host["CapDrop"]
    assert len(host["CapDrop"]) == 13  # type: ignore[arg-type]
    assert carrier("create", "--name", "p", "--privileged", image, "sh").code == 0
    host = _host(carrier, "p")
    assert (host["Privileged"], host["CapAdd"], host["CapDrop"]) == (True, [], [])
    assert carrier("rm", "o", "all", "p").code == 0


@pytest.mark.root
def test_cgroup_limits(carrier: Carrier, image: str) -> None:
    """As root (where cgroup limits are allowed): --pids-limit, --memory and --cpus show as
    Podman's PidsLimit, Memory (bytes) and NanoCpus."""
    assert carrier("create", "--name", "l", "--pids-limit", "50", "--memory", "512m",
                   "--cpus", "1.5", image, "sh").code == 0
    host = _host(carrier, "l")
    assert (host["PidsLimit"], host["Memory"], host["NanoCpus"]) == (50, 536870912, 1500000000)
    assert carrier("rm", "l").code == 0
