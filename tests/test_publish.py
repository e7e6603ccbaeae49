"""Publishing as Podman spells it: -p CONTAINER_PORT, -p IP::PORT, -P/--publish-all, and
--add-host NAME:host-gateway, rootless with pasta and slirp4netns alike. Traffic goes only to
host 127.0.0.1 (CI runs this inside a network namespace whose uplink leads nowhere)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import Carrier, Result
from test_network import BODY, HELPERS, http_server  # noqa: F401 - the fixture
from test_ports import _http_get

WEB = "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture(params=HELPERS)
def helper(request: pytest.FixtureRequest) -> str:
    """Every test here runs with each helper."""
    return str(request.param)


@pytest.fixture
def exposing(carrier: Carrier, rootfs_tar: Path, tmp_path: Path) -> str:
    """The busybox root filesystem as an image that exposes 80/tcp and 5353/udp, loaded."""
    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer = rootfs_tar.read_bytes()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}, "5353/udp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **put(layer)}],
    }).encode()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **put(manifest),
        "annotations": {"org.opencontainers.image.ref.name": "test/exposing:latest"}}]}))
    res = carrier("load", "-i", str(layout))
    assert res.code == 0, res.err
    return "test/exposing"


def published(carrier: Carrier, name: str) -> dict[str, tuple[str, int]]:
    """``carrier port NAME`` as {"80/tcp": (host address, host port)}."""
    res = carrier("port", name)
    assert res.code == 0, res.err
    out = {}
    for line in res.out.splitlines():
        ctr, _, host = line.partition(" -> ")
        address, _, port = host.rpartition(":")
        out[ctr] = (address, int(port))
    return out


def stored(root: Path) -> list[str]:
    """What the Carrier root holds for containers: their directories and names."""
    return sorted(p.name for d in ("containers", "names") if (root / d).exists()
                  for p in (root / d).iterdir())


def one_line_125(res: Result, words: str) -> None:
    """The result is one ``carrier:`` line holding *words*, with exit code 125."""
    assert res.code == 125, res
    assert len(res.err.splitlines()) == 1, res
    assert res.err.startswith("carrier: "), res
    assert words in res.err, res


class TestRandomHostPort:
    def test_container_port_only(self, carrier: Carrier, image: str, helper: str) -> None:
        """-p PORT publishes on every address and a free host port, reached on 127.0.0.1."""
        assert carrier("run", "-d", "--name", "web", "--network", helper, "-p", "80",
                       image, "sh", "-c", WEB).code == 0
        ports = published(carrier, "web")
        assert list(ports) == ["80/tcp"]
        address, port = ports["80/tcp"]
        assert address in ("0.0.0.0", "[::]", "::"), ports
        assert port > 0, ports
        assert _http_get(port, "/index.html").endswith(b"published\n")
        assert carrier("rm", "-f", "web").code == 0

    def test_address_without_host_port(self, carrier: Carrier, image: str, helper: str) -> None:
        """-p IP::PORT publishes on that address and a free host port; a container range gives
        one free port each."""
        assert carrier("run", "-d", "--name", "web", "--network", helper, "-p", "127.0.0.1::80",
                       "-p", "127.0.0.1::8000-8001/udp", image, "sh", "-c", WEB).code == 0
        ports = published(carrier, "web")
        assert sorted(ports) == ["80/tcp", "8000/udp", "8001/udp"]
        assert {address for address, _ in ports.values()} == {"127.0.0.1"}
        assert _http_get(ports["80/tcp"][1], "/index.html").endswith(b"published\n")
        assert carrier("rm", "-f", "web").code == 0


class TestPublishAll:
    def test_exposed_ports(self, carrier: Carrier, exposing: str, helper: str) -> None:
        """-P publishes each port the image exposes on a free host port; an explicit -p for one
        of them is kept as given."""
        assert carrier("run", "-d", "--name", "web", "--network", helper, "-P",
                       exposing, "sh", "-c", WEB).code == 0
        ports = published(carrier, "web")
        assert sorted(ports) == ["5353/udp", "80/tcp"]
        assert _http_get(ports["80/tcp"][1], "/index.html").endswith(b"published\n")
        assert carrier("rm", "-f", "web").code == 0
        assert carrier("create", "--name", "both", "--network", helper, "--publish-all", "-p",
                       "127.0.0.1:0:80", exposing).code == 0
        assert sorted(carrier.record("both")["spec"]["ports"]) == [  # type: ignore[index]
            "0:5353/udp", "127.0.0.1:0:80"]
        assert carrier("rm", "both").code == 0

    def test_nothing_exposed(self, carrier: Carrier, image: str) -> None:
        """-P on an image that exposes nothing publishes nothing."""
        assert carrier("create", "--name", "c", "-P", image, "true").code == 0
        assert carrier.record("c")["spec"]["ports"] == []  # type: ignore[index]
        assert carrier("rm", "c").code == 0

    def test_bad_input(self, carrier: Carrier, image: str, exposing: str) -> None:
        """A bad short -p, or -P of exposed ports without a helper, is one line and 125, and
        nothing is stored."""
        for args, words in ((["-p", "0", image], "bad container port"),
                            (["-p", "70000", image], "bad container port"),
                            (["-p", "127.0.0.1::90-80", image], "bad container port range"),
                            (["-p", "1.2.3::80", image], "bad host address"),
                            (["-P", "--network", "none", exposing], "not with --network none")):
            for command in ("run", "create"):
                one_line_125(carrier(command, *args, "true"), words)
        assert stored(carrier.root) == []


class TestHostGateway:
    def test_reaches_the_host(self, carrier: Carrier, image: str, helper: str,
                              http_server: int) -> None:  # noqa: F811 - the fixture
        """--add-host NAME:host-gateway names the helper's address for the host (the one
        host.containers.internal has), and NAME reaches a server on host 127.0.0.1."""
        res = carrier("run", "--rm", "--network", helper, "--host-loopback", "--add-host",
                      "hg:host-gateway", image, "sh", "-c",
                      f"cat /etc/hosts; echo; wget -q -O - http://hg:{http_server}/")
        assert res.code == 0, res.err
        hosts, _, body = res.out.rpartition("\n")
        entries = {line.split("\t")[1].split()[0]: line.split("\t")[0]
                   for line in hosts.splitlines() if "\t" in line}
        assert entries["hg"] == entries["host.containers.internal"], hosts
        assert body.encode() == BODY

    def test_refused_without_the_mapping(self, carrier: Carrier, image: str) -> None:
        """host-gateway without --host-loopback, or without a helper, is one line and 125."""
        for args, words in ((["--network", "pasta"], "needs --host-loopback"),
                            (["--network", "none", "--host-loopback"], "not with --network none")):
            for command in ("run", "create"):
                one_line_125(carrier(command, *args, "--add-host", "hg:host-gateway", image,
                                     "true"), "host-gateway")
                one_line_125(carrier(command, *args, "--add-host", "hg:host-gateway", image,
                                     "true"), words)
        assert stored(carrier.root) == []
