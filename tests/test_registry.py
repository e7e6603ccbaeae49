"""Pulling from a real registry (distribution 2.8 on loopback): layers, whiteouts, caching,
multi-arch, auth, corrupted and interrupted downloads; plus the credentials files."""

from __future__ import annotations

import base64
import json
import os
import platform
import select
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import Carrier
from oci import HELLO, build_layout
from registry import Proxy, Registry, blob_path, free_port, push, run_proxy, run_registry

from carrier._images._auth import credentials, login, logout
from carrier._images._pull import LineProgress, pull
from carrier._images._registry import check_login
from carrier._images._store import Store
from carrier._util._errors import CarrierError
from carrier._util._root import Root

HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"
USERS = {"alice": "s3cret-pass"}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two test images as OCI layouts: single-platform and multi-arch (amd64 + arm64)."""
    work = tmp_path_factory.mktemp("layouts")
    return {
        "one": (work / "one", build_layout(work / "one")),
        "multi": (work / "multi", build_layout(work / "multi", platforms=("linux/amd64", "linux/arm64"))),
    }


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, layouts: dict[str, Any]) -> Iterator[Registry]:
    """An open registry holding test/bb (one platform) and test/multi (an index)."""
    with run_registry(tmp_path_factory.mktemp("registry")) as reg:
        push(layouts["one"][0], f"{reg.host}/test/bb:latest")
        push(layouts["multi"][0], f"{reg.host}/test/multi:latest", multi=True)
        push(layouts["one"][0], f"{reg.host}/test/docker:latest", docker_format=True)
        push(layouts["multi"][0], f"{reg.host}/test/dockerlist:latest", multi=True, docker_format=True)
        yield reg


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory, layouts: dict[str, Any]) -> Iterator[Registry]:
    """A registry with htpasswd (bcrypt) basic auth, holding test/bb."""
    with run_registry(tmp_path_factory.mktemp("auth-registry"), users=USERS) as reg:
        push(layouts["one"][0], f"{reg.host}/test/bb:latest", creds=("alice", USERS["alice"]))
        yield reg


@pytest.fixture
def root(tmp_path: Path) -> Root:
    """A fresh Carrier root for library-level pulls."""
    return Root.open(tmp_path / "root")


@pytest.fixture
def auth_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private credentials file (``$REGISTRY_AUTH_FILE``); no other file is consulted."""
    path = tmp_path / "auth" / "auth.json"
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return path


def do_pull(root: Root, ref: str, backend: str = "asyncio", **kw: Any) -> Any:
    return anyio.run(lambda: pull(root, ref, **kw), backend=backend)


def assert_nothing_stored(root: Root) -> None:
    """No image, no layer, no blob and no temporary file under *root*."""
    assert Store(root).images() == []
    assert [p.name for p in root.layers.iterdir()] == []
    assert [p.name for p in root.blobs.iterdir()] == []
    assert [p.name for p in root.tmp.iterdir()] == []


def assert_layers_applied(root: Root, info: dict[str, Any]) -> None:
    """Layer 2's file, whiteout and opaque directory are in the store in overlay form."""
    base, top = (Store(root).layers.path(d) for d in info["diff_ids"])
    assert (base / "etc" / "removed").is_file()
    assert (base / "opq" / "old").is_file()
    assert (top / "hello.txt").read_text() == HELLO
    st = os.lstat(top / "etc" / "removed")
    assert stat.S_ISCHR(st.st_mode), "the whiteout is not a character device"
    assert st.st_rdev == 0, "the whiteout is not a 0/0 device"
    assert os.getxattr(top / "opq", "user.overlay.opaque") == b"y"
    assert sorted(p.name for p in (top / "opq").iterdir()) == ["new"]


# -- pulling ------------------------------------------------------------------------------


def test_pull(registry: Registry, layouts: dict[str, Any], root: Root,
              capsys: pytest.CaptureFixture[str]) -> None:
    info = layouts["one"][1]
    before = len(registry.blob_gets())
    image = do_pull(root, f"{registry.host}/test/bb", progress=LineProgress(__import__("sys").stdout))
    assert image.id == info["config"]
    assert image.diff_ids == tuple(info["diff_ids"])
    assert [i.names for i in Store(root).images()] == [(f"{registry.host}/test/bb:latest",)]
    assert Store(root).get(f"{registry.host}/test/bb:latest").id == info["config"]
    assert image.run_config["Env"] == ["PATH=/bin", "FROM_IMAGE=yes"]
    assert sorted(registry.blob_gets()[before:]) == sorted([info["config"], *info["layers"]])
    assert_layers_applied(root, info)
    assert list(root.tmp.iterdir()) == []
    out = capsys.readouterr().out.splitlines()
    for layer in info["layers"]:
        short = layer.removeprefix("sha256:")[:12]
        assert f"{short}: downloading" in out
        assert any(line.startswith(f"{short}: done ") for line in out)
    assert info["layer_sizes"][1] == 226
    assert f"{info['layers'][1][7:19]}: done 226 B" in out


def test_second_pull_downloads_nothing(registry: Registry, layouts: dict[str, Any], root: Root) -> None:
    info = layouts["one"][1]
    do_pull(root, f"{registry.host}/test/bb:latest")
    before = len(registry.blob_gets())
    image = do_pull(root, f"{registry.host}/test/bb:latest", backend="trio")  # and on trio
    assert registry.blob_gets()[before:] == []
    assert image.id == info["config"]


def test_pull_by_digest(registry: Registry, layouts: dict[str, Any], root: Root) -> None:
    info = layouts["one"][1]
    image = do_pull(root, f"{registry.host}/test/bb@{info['manifest']}")
    assert image.id == info["config"]
    image = do_pull(root, f"{registry.host}/test/bb:latest@{info['manifest']}")
    assert image.id == info["config"]
    missing = "sha256:" + "0" * 64
    with pytest.raises(CarrierError, match="manifest unknown"):
        do_pull(root, f"{registry.host}/test/bb@{missing}")


def test_multi_arch(registry: Registry, layouts: dict[str, Any], root: Root) -> None:
    info = layouts["multi"][1]
    ref = f"{registry.host}/test/multi"
    image = do_pull(root, ref)
    assert f"ARCH={HOST_ARCH}" in image.run_config["Env"]
    assert image.id == info["configs"][f"linux/{HOST_ARCH}"]
    before = len(registry.blob_gets())
    other = do_pull(root, ref, platform=f"linux/{OTHER_ARCH}")
    assert f"ARCH={OTHER_ARCH}" in other.run_config["Env"]
    assert other.config["architecture"] == OTHER_ARCH
    assert registry.blob_gets()[before:] == [info["configs"][f"linux/{OTHER_ARCH}"]]  # layers are shared
    want = r"no image for platform linux/s390x.*available: linux/amd64, linux/arm64 "
    with pytest.raises(CarrierError, match=want):
        do_pull(root, ref, platform="linux/s390x")
    with pytest.raises(CarrierError, match="invalid platform"):
        do_pull(root, ref, platform="arm64")


def test_docker_schema2_and_manifest_list(registry: Registry, layouts: dict[str, Any], root: Root) -> None:
    """Docker's own media types (schema 2 manifests, manifest lists, tar.gzip layers) pull too."""
    image = do_pull(root, f"{registry.host}/test/docker")
    assert image.diff_ids == tuple(layouts["one"][1]["diff_ids"])
    assert_layers_applied(root, layouts["one"][1])
    other = do_pull(root, f"{registry.host}/test/dockerlist", platform=f"linux/{OTHER_ARCH}")
    assert f"ARCH={OTHER_ARCH}" in other.run_config["Env"]


def test_unknown_image_and_unreachable_registry(registry: Registry, root: Root) -> None:
    with pytest.raises(CarrierError, match="manifest unknown") as e:
        do_pull(root, f"{registry.host}/test/nothing:here")
    assert "\n" not in str(e.value)
    port = free_port()
    with pytest.raises(CarrierError, match=f"cannot reach registry 127.0.0.1:{port}") as e:
        do_pull(root, f"127.0.0.1:{port}/test/bb")
    assert "\n" not in str(e.value)
    with pytest.raises(CarrierError, match="invalid reference format"):
        do_pull(root, "127.0.0.1:5000/Test/BB")
    assert_nothing_stored(root)


def test_tls_verify_refuses_plain_http(registry: Registry, root: Root) -> None:
    """With TLS verification asked for, a loopback registry is not reached over plain http."""
    with pytest.raises(CarrierError, match=f"cannot reach registry {registry.host}"):
        do_pull(root, f"{registry.host}/test/bb", tls_verify=True)
    assert_nothing_stored(root)


# -- authentication -----------------------------------------------------------------------


def test_auth(auth_registry: Registry, layouts: dict[str, Any], root: Root, auth_file: Path) -> None:
    ref = f"{auth_registry.host}/test/bb"
    with pytest.raises(CarrierError, match=r"authentication required \(401\)"):
        do_pull(root, ref)
    login(auth_registry.host, "alice", "wrong")
    with pytest.raises(CarrierError) as e:
        do_pull(root, ref)
    assert str(e.value) == (f"pull {ref}: authentication failed (401): check credentials "
                            f"(carrier login {auth_registry.host})")
    with pytest.raises(CarrierError, match="authentication failed"):
        anyio.run(lambda: check_login(auth_registry.host, "alice", "wrong"))
    assert_nothing_stored(root)
    anyio.run(lambda: check_login(auth_registry.host, "alice", USERS["alice"]))
    login(auth_registry.host, "alice", USERS["alice"])
    image = do_pull(root, ref)
    assert image.id == layouts["one"][1]["config"]


def test_token_auth(proxy: Proxy, layouts: dict[str, Any], root: Root, auth_file: Path) -> None:
    """Bearer token auth (as Docker Hub does it): the token is fetched with the stored credentials."""
    proxy.bearer = ("bob", "tok-pass")
    ref = f"{proxy.host}/test/bb"
    with pytest.raises(CarrierError, match=r"authentication required \(401\)"):
        do_pull(root, ref)
    login(proxy.host, "bob", "nope")
    with pytest.raises(CarrierError, match=rf"authentication failed \(401\): .*carrier login {proxy.host}"):
        do_pull(root, ref)
    assert_nothing_stored(root)
    login(proxy.host, "bob", "tok-pass")
    image = do_pull(root, ref, backend="trio")
    assert image.id == layouts["one"][1]["config"]
    assert any(r.startswith("GET /token?") for r in proxy.requests)


@pytest.mark.parametrize("realm", ["http://192.0.2.1/token", "http://[::1:not-a-host/token"])
def test_token_realm_elsewhere_over_plain_http_is_refused(proxy: Proxy, root: Root, auth_file: Path,
                                                          realm: str) -> None:
    """Credentials go to a token server over plain HTTP only on the (insecure-allowed) registry's
    own host or loopback; a realm elsewhere is refused before any connection is made, and a
    malformed one is a one-line error."""
    proxy.bearer = ("bob", "tok-pass")
    proxy.realm = realm
    login(proxy.host, "bob", "tok-pass")
    with pytest.raises(CarrierError, match=r"plain-http token server|invalid token server") as e:
        do_pull(root, f"{proxy.host}/test/bb")
    assert "\n" not in str(e.value)
    assert not any(r.startswith("GET /token") for r in proxy.requests)
    assert_nothing_stored(root)


def test_credentials_files(tmp_path: Path, auth_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docker = tmp_path / "home" / ".docker" / "config.json"
    docker.parent.mkdir(parents=True)
    enc = base64.b64encode(b"hub:pw:with:colons").decode()
    up = base64.b64encode(b"u:p").decode()
    docker.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": enc},
                                            "http://reg.example:5000/v2/": {"auth": up}},
                                  "credsStore": "keep-me"}))
    assert credentials("docker.io") == ("hub", "pw:with:colons")
    assert credentials("reg.example:5000") == ("u", "p")
    assert credentials("reg.example") is None
    # $REGISTRY_AUTH_FILE comes first, and login writes there, atomically and privately
    auth_file.parent.mkdir()
    auth_file.write_text(json.dumps({"auths": {"other:1": {"auth": enc}}}))
    login("reg.example:5000", "new", "pass")
    assert credentials("reg.example:5000") == ("new", "pass")
    assert json.loads(auth_file.read_text())["auths"]["other:1"] == {"auth": enc}
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    assert logout("reg.example:5000")
    assert not logout("reg.example:5000")
    assert credentials("reg.example:5000") == ("u", "p")  # back to the Docker file
    # without REGISTRY_AUTH_FILE: XDG_RUNTIME_DIR/containers/auth.json, else ~/.docker/config.json
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    login("docker.io", "a", "b")
    written = json.loads((tmp_path / "run" / "containers" / "auth.json").read_text())
    assert list(written["auths"]) == ["docker.io"]
    assert credentials("docker.io") == ("a", "b")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    login("docker.io", "c", "d")
    data = json.loads(docker.read_text())
    assert data["credsStore"] == "keep-me"
    assert "http://reg.example:5000/v2/" in data["auths"]
    assert data["auths"]["https://index.docker.io/v1/"] == {"auth": base64.b64encode(b"c:d").decode()}
    assert stat.S_IMODE(docker.stat().st_mode) == 0o600
    docker.write_text(json.dumps({"auths": {"bad:1": {"auth": "%%%"}}}))
    with pytest.raises(CarrierError, match="bad 'auth' entry"):
        credentials("bad:1")


# -- faults -------------------------------------------------------------------------------


@pytest.fixture
def proxy(registry: Registry) -> Iterator[Proxy]:
    """A fault-injecting proxy in front of the open registry."""
    with run_proxy(registry.port) as p:
        yield p


def test_digest_mismatch(proxy: Proxy, layouts: dict[str, Any], root: Root) -> None:
    info = layouts["one"][1]
    bad = info["layers"][0]

    def flip(path: str, body: bytes) -> bytes:
        if not blob_path(path, bad):
            return body
        return body[:500] + bytes([body[500] ^ 0xFF]) + body[501:]

    proxy.transform = flip
    with pytest.raises(CarrierError, match="digest mismatch") as e:
        do_pull(root, f"{proxy.host}/test/bb")
    assert bad in str(e.value)
    assert "\n" not in str(e.value)
    assert any(blob_path(r, bad) for r in proxy.requests)
    assert_nothing_stored(root)


def test_interrupted_pull_then_retry(proxy: Proxy, layouts: dict[str, Any], root: Root) -> None:
    info = layouts["one"][1]
    proxy.cut = lambda path: blob_path(path, info["layers"][0])
    with pytest.raises(CarrierError, match=r"download of .* failed") as e:
        do_pull(root, f"{proxy.host}/test/bb")
    assert info["layers"][0] in str(e.value)
    assert [i.id for i in Store(root).images()] == []
    assert list(root.tmp.iterdir()) == []
    proxy.cut = None
    image = do_pull(root, f"{proxy.host}/test/bb")
    assert image.id == info["config"]
    assert_layers_applied(root, info)


def test_stale_partial_download_is_discarded(registry: Registry, layouts: dict[str, Any], root: Root) -> None:
    """What a killed pull left in root.tmp is deleted by the next pull, never used."""
    info = layouts["one"][1]
    stale = root.tmp / "pull-killed"
    stale.mkdir()
    (stale / ".lock").touch()
    (stale / f"{info['layers'][0][7:]}.blob").write_bytes(b"half a blob")
    image = do_pull(root, f"{registry.host}/test/bb")
    assert image.id == info["config"]
    assert list(root.tmp.iterdir()) == []
    assert_layers_applied(root, info)


def test_zstd_layers_are_refused(proxy: Proxy, root: Root) -> None:
    def zstd(path: str, body: bytes) -> bytes:
        return body.replace(b"tar+gzip", b"tar+zstd") if "/manifests/" in path else body

    proxy.transform = zstd
    with pytest.raises(CarrierError, match=r"unsupported layer media type .*tar\+zstd"):
        do_pull(root, f"{proxy.host}/test/bb")
    assert_nothing_stored(root)


def test_malformed_manifest_is_one_line(proxy: Proxy, root: Root) -> None:
    """A manifest whose layers are not a list (served by the test's proxy, unverified since the
    reference is a tag) is a one-line error, not a traceback."""
    def malformed(path: str, body: bytes) -> bytes:
        if "/manifests/" not in path:
            return body
        doc = json.loads(body)
        doc["layers"] = 5
        return json.dumps(doc).encode()

    proxy.transform = malformed
    with pytest.raises(CarrierError, match="malformed manifest: 'layers' is not a list"):
        do_pull(root, f"{proxy.host}/test/bb")
    assert_nothing_stored(root)


# -- the command line ---------------------------------------------------------------------


@pytest.fixture
def cli_pull(carrier: Carrier) -> Carrier:
    """The CLI (``carrier pull`` and friends)."""
    return carrier


def test_cli_pull_and_run(cli_pull: Carrier, registry: Registry) -> None:
    ref = f"{registry.host}/test/bb"
    res = cli_pull("pull", ref)
    assert res.code == 0, res.err
    images = cli_pull("images")
    assert ref in images.out
    assert "latest" in images.out
    res = cli_pull("run", "--rm", ref)
    assert (res.code, res.out) == (0, HELLO), res.err
    res = cli_pull("run", "--rm", ref, "test ! -e /etc/removed && ls /opq && pwd && echo $FROM_IMAGE")
    assert (res.code, res.out.split()) == (0, ["new", "/opq", "yes"]), res.err


def test_cli_pull_wrong_password(cli_pull: Carrier, auth_registry: Registry, tmp_path: Path) -> None:
    cli_pull.env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    res = cli_pull("login", "-u", "alice", "--password-stdin", auth_registry.host, stdin="wrong\n")
    assert res.code == 125
    assert "authentication failed" in res.err
    assert not (tmp_path / "auth.json").exists()  # a refused login stores nothing
    wrong = base64.b64encode(b"alice:no").decode()
    (tmp_path / "auth.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": wrong}}}))
    res = cli_pull("pull", f"{auth_registry.host}/test/bb")
    assert res.code == 125
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].endswith(f"pull {auth_registry.host}/test/bb: authentication failed (401): "
                             f"check credentials (carrier login {auth_registry.host})")
    assert "test/bb" not in cli_pull("images").out


def test_cli_login_then_pull(cli_pull: Carrier, auth_registry: Registry, tmp_path: Path) -> None:
    """``carrier login`` checks and stores the credentials; the pull then uses them."""
    cli_pull.env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    res = cli_pull("login", "-u", "alice", "--password-stdin", auth_registry.host,
                   stdin=f"{USERS['alice']}\n")
    assert res.code == 0, res.err
    assert (tmp_path / "auth.json").stat().st_mode & 0o777 == 0o600
    res = cli_pull("pull", f"{auth_registry.host}/test/bb")
    assert res.code == 0, res.err


def test_run_pulls_a_missing_image_and_pull_policies(cli_pull: Carrier, registry: Registry) -> None:
    """run pulls what the store lacks (Docker's --pull missing); a stored image is not fetched
    again; --pull always fetches the manifest again but no blob it already has; never refuses."""
    ref = f"{registry.host}/test/bb"
    res = cli_pull("run", "--rm", "--pull", "never", ref)
    assert res.code == 125
    assert "no such image" in res.err
    blobs = len(registry.blob_gets())
    res = cli_pull("run", "--rm", ref)
    assert (res.code, res.out) == (0, HELLO), res.err
    served = len(registry.blob_gets())
    assert served - blobs == 3  # the config and two layers
    manifests = registry.manifest_gets()
    assert cli_pull("run", "--rm", ref, "true").code == 0
    assert registry.manifest_gets() == manifests  # stored: the registry is not asked at all
    assert cli_pull("run", "--rm", "--pull", "always", ref, "true").code == 0
    assert len(registry.manifest_gets()) > len(manifests)
    assert len(registry.blob_gets()) == served


def test_cli_pull_on_a_terminal_draws_progress_bars(cli_pull: Carrier, registry: Registry) -> None:
    """On a real terminal (a pty), pull draws rich bars per layer; piped, it prints lines."""
    ref = f"{registry.host}/test/bb"
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(cli_pull.argv("pull", ref), env={**cli_pull.env, "COLUMNS": "100"},
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        screen = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            try:
                chunk = os.read(master, 65536) if ready else b""
            except OSError:  # EIO: the terminal's last writer has gone
                chunk = b""
            if not chunk:
                break
            screen += chunk
        assert proc.wait(timeout=10) == 0, screen
    finally:
        os.close(master)
    text = screen.decode(errors="replace")
    assert "\x1b[" in text  # drawn, not printed
    assert "━" in text  # rich's bar
    assert "downloading" not in text  # the piped form's lines
    piped = cli_pull("pull", ref)  # a second pull, piped: stored layers are reported as such
    assert piped.code == 0, piped.err
    assert "already exists" in piped.err
