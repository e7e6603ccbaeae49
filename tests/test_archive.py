"""``carrier load``: docker-save and OCI archives written by skopeo (not by Carrier), multi-arch
platform choice, and hostile or broken archives refused in one line with nothing named."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Carrier
from oci import HELLO, build_layout

from carrier._images._archive import Loaded, load
from carrier._images._platform import Platform
from carrier._images._store import Store
from carrier._util._errors import CarrierError
from carrier._util._root import Root

HOST = str(Platform.host())
OTHER = "linux/arm64" if HOST != "linux/arm64" else "linux/amd64"


def skopeo(*args: str) -> None:
    """Run skopeo on local files only (no registry is involved)."""
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is not installed (apt install skopeo)")
    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A single-platform OCI layout for the host's platform (tests/oci.py)."""
    dest = tmp_path_factory.mktemp("layout") / "oci"
    return dest, build_layout(dest, platforms=(HOST,))


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A two-platform OCI archive written by ``skopeo copy --all``."""
    work = tmp_path_factory.mktemp("multi")
    info = build_layout(work / "oci", platforms=(HOST, OTHER))
    skopeo("--all", f"oci:{work / 'oci'}:latest", f"oci-archive:{work / 'multi.tar'}:test/multi:1")
    return work / "multi.tar", info


@pytest.fixture(scope="module")
def docker_archive(built: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``skopeo copy oci:DIR docker-archive:FILE:test/bb:latest``."""
    out = tmp_path_factory.mktemp("docker") / "bb.tar"
    skopeo(f"oci:{built[0]}:latest", f"docker-archive:{out}:test/bb:latest")
    return out


@pytest.fixture(scope="module")
def oci_archive(built: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``skopeo copy oci:DIR oci-archive:FILE:test/bb:latest`` (a full reference as ref.name)."""
    out = tmp_path_factory.mktemp("ociarc") / "bb.tar"
    skopeo(f"oci:{built[0]}:latest", f"oci-archive:{out}:test/bb:latest")
    return out


@pytest.fixture
def store(carrier_root: Path) -> Store:
    """The store of the test's private Carrier root."""
    return Store(Root.open(carrier_root))


def rewrite(src: Path, dest: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """Copy tar *src* to *dest*, passing each regular file through *edit* (None drops it)."""
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for m in tin.getmembers():
            if not m.isfile():
                tout.addfile(m)
                continue
            f = tin.extractfile(m)
            assert f is not None
            data = edit(m.name, f.read())
            if data is not None:
                m.size = len(data)
                tout.addfile(m, io.BytesIO(data))
    return dest


def member(archive: Path, name: str) -> bytes:
    """One member's bytes."""
    with tarfile.open(archive) as tar:
        f = tar.extractfile(name)
        assert f is not None
        return f.read()


def only(loaded: list[Loaded]) -> Loaded:
    """The single image an archive held."""
    assert len(loaded) == 1, loaded
    return loaded[0]


def layer_file(store: Store, diff_id: str, rel: str) -> Path:
    """*rel* inside one unpacked layer (wherever the layer store keeps its tree)."""
    base = store.layers.path(diff_id)
    return next(p for p in (base / rel, base / "diff" / rel) if p.exists())


def refuse(store: Store, archive: Path, *words: str, platform: str | None = None) -> str:
    """Loading *archive* fails with one line naming the file and *words*; nothing is named."""
    with pytest.raises(CarrierError) as err:
        load(store, archive, platform=platform)
    text = str(err.value)
    assert "\n" not in text, text
    assert archive.name in text, text
    for word in words:
        assert word in text, text
    assert store.images() == []
    return text


# -- reading what skopeo wrote -------------------------------------------------------------


def test_docker_archive(store: Store, docker_archive: Path, built: tuple[Path, dict[str, Any]]) -> None:
    """Names, the image id (sha256 of the config), both layers with layer 2's files."""
    info = built[1]
    got = only(load(store, docker_archive))
    config = member(docker_archive, info["config"].removeprefix("sha256:") + ".json")
    assert got.image.id == info["config"] == "sha256:" + hashlib.sha256(config).hexdigest()
    assert got.names == ("test/bb:latest",)
    assert got.messages == ["Loaded image: test/bb:latest"]
    assert store.get("test/bb").id == got.image.id
    assert all(store.layers.has(d) for d in info["diff_ids"])
    assert layer_file(store, info["diff_ids"][1], "hello.txt").read_text() == HELLO
    assert list(store.root.tmp.iterdir()) == []  # temporary layer files are gone


def test_gzip_docker_archive_with_legacy_layer_paths(store: Store, docker_archive: Path,
                                                     tmp_path: Path) -> None:
    """Older ``docker save``: Layers as ``<id>/layer.tar`` symlinks, the archive gzipped."""
    links = {}
    with tarfile.open(docker_archive) as tar:
        for m in tar.getmembers():
            if m.issym() and m.name.endswith("/layer.tar"):
                links[m.linkname.removeprefix("../")] = m.name

    def legacy(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest[0]["Layers"] = [links[x] for x in manifest[0]["Layers"]]
        return json.dumps(manifest).encode()

    plain = rewrite(docker_archive, tmp_path / "legacy.tar", legacy)
    packed = tmp_path / "legacy.tar.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert only(load(store, packed)).names == ("test/bb:latest",)


def test_oci_archive(store: Store, oci_archive: Path, built: tuple[Path, dict[str, Any]]) -> None:
    """skopeo's oci-archive with a full reference as its ref.name."""
    got = only(load(store, oci_archive))
    assert got.image.id == built[1]["config"]
    assert got.names == ("test/bb:latest",)
    assert store.get("docker.io/test/bb:latest").id == got.image.id


def test_oci_archive_with_a_bare_tag_is_untagged(store: Store, built: tuple[Path, dict[str, Any]],
                                                 tmp_path: Path) -> None:
    """ref.name ``latest`` names no repository: the image is loaded by id only."""
    out = tmp_path / "tag.tar"
    skopeo(f"oci:{built[0]}:latest", f"oci-archive:{out}:latest")
    got = only(load(store, out))
    assert got.names == ()
    assert got.messages == [f"Loaded image ID: {built[1]['config']}"]
    assert store.get(got.image.id).id == built[1]["config"]


def test_oci_layout_directory(store: Store, built: tuple[Path, dict[str, Any]]) -> None:
    """A layout directory loads as its archive would."""
    assert only(load(store, built[0])).image.id == built[1]["config"]


def test_annotations_that_are_not_an_object_are_ignored(store: Store, tmp_path: Path) -> None:
    """Malformed annotations in index.json give no traceback: the image loads, unnamed."""
    layout = tmp_path / "odd"
    info = build_layout(layout)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["annotations"] = ["not", "an", "object"]
    (layout / "index.json").write_text(json.dumps(index))
    loaded = only(load(store, layout))
    assert loaded.image.id == info["config"]
    assert loaded.names == ()


def test_docker_25_archive_prefers_manifest_json(store: Store, built: tuple[Path, dict[str, Any]],
                                                 tmp_path: Path) -> None:
    """Docker 25+ writes an OCI layout plus manifest.json with blobs/sha256 paths."""
    info = built[1]
    src = shutil.copytree(built[0], tmp_path / "oci")
    layers = []
    for digest in info["layers"]:  # docker save stores layers uncompressed, named by diff id
        raw = gzip.decompress((src / "blobs" / "sha256" / digest[7:]).read_bytes())
        (src / "blobs" / "sha256" / hashlib.sha256(raw).hexdigest()).write_bytes(raw)
        layers.append("blobs/sha256/" + hashlib.sha256(raw).hexdigest())
    manifest = [{"Config": f"blobs/sha256/{info['config'][7:]}", "RepoTags": ["d25:v1"], "Layers": layers}]
    out = tmp_path / "d25.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(src, arcname=".")
        data = json.dumps(manifest).encode()
        entry = tarfile.TarInfo("manifest.json")
        entry.size = len(data)
        tar.addfile(entry, io.BytesIO(data))
    got = only(load(store, out))
    assert (got.names, got.image.id) == (("d25:v1",), info["config"])


# -- multi-arch ----------------------------------------------------------------------------


def test_multi_arch_picks_the_host(store: Store, multi: tuple[Path, dict[str, Any]]) -> None:
    archive, info = multi
    got = only(load(store, archive))
    assert got.image.id == info["configs"][HOST]
    assert got.names == ("test/multi:1",)


def test_multi_arch_platform_option(store: Store, multi: tuple[Path, dict[str, Any]]) -> None:
    archive, info = multi
    got = only(load(store, archive, platform=OTHER))
    assert got.image.id == info["configs"][OTHER]
    assert got.image.config["architecture"] == OTHER.split("/")[1]


def test_multi_arch_unknown_platform_lists_what_there_is(store: Store,
                                                        multi: tuple[Path, dict[str, Any]]) -> None:
    text = refuse(store, multi[0], "linux/s390x", platform="linux/s390x")
    assert f"available: {', '.join(sorted((HOST, OTHER)))}" in text


# -- hostile and broken archives -------------------------------------------------------------


def test_corrupted_layer(store: Store, docker_archive: Path, built: tuple[Path, dict[str, Any]],
                         tmp_path: Path) -> None:
    """A layer whose content differs from its diff id: the digest is named, no image is stored."""
    bad = rewrite(docker_archive, tmp_path / "bad.tar",
                  lambda n, d: d.replace(b"hello from layer 2", b"hello from layer X"))
    refuse(store, bad, built[1]["diff_ids"][1])


def test_corrupted_oci_blob(store: Store, oci_archive: Path, built: tuple[Path, dict[str, Any]],
                            tmp_path: Path) -> None:
    target = "blobs/sha256/" + built[1]["layers"][0][7:]
    bad = rewrite(oci_archive, tmp_path / "bad.tar",
                  lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n == target else d)
    refuse(store, bad, built[1]["layers"][0])


def test_config_not_matching_its_name(store: Store, docker_archive: Path, tmp_path: Path) -> None:
    bad = rewrite(docker_archive, tmp_path / "bad.tar",
                  lambda n, d: d.replace(b'"User": "0"', b'"User": "1"') if n.endswith(".json") else d)
    refuse(store, bad, "config", "digest")


def test_missing_blob(store: Store, oci_archive: Path, built: tuple[Path, dict[str, Any]],
                      tmp_path: Path) -> None:
    target = "blobs/sha256/" + built[1]["layers"][1][7:]
    bad = rewrite(oci_archive, tmp_path / "bad.tar", lambda n, d: None if n == target else d)
    refuse(store, bad, "missing", built[1]["layers"][1][7:])


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../etc/passwd"])
def test_layer_path_escaping_the_archive(store: Store, docker_archive: Path, tmp_path: Path,
                                         path: str) -> None:
    def edit(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest[0]["Layers"][0] = path
        return json.dumps(manifest).encode()

    refuse(store, rewrite(docker_archive, tmp_path / "bad.tar", edit), repr(path), "outside the archive")


def test_symlink_escaping_or_looping(store: Store, docker_archive: Path, tmp_path: Path) -> None:
    """Layer symlinks resolve only inside the archive; a loop is an error, not a crash."""
    for target, word in (("../../etc/passwd", "outside the archive"), ("loop.tar", "too many levels")):
        bad = tmp_path / f"bad-{word[:3]}.tar"
        rewrite(docker_archive, bad, lambda n, d: d)
        with tarfile.open(bad, "a") as tar:
            link = tarfile.TarInfo("loop.tar" if target == "loop.tar" else "x/layer.tar")
            link.type, link.linkname = tarfile.SYMTYPE, target
            tar.addfile(link)
            manifest = json.loads(member(docker_archive, "manifest.json"))
            manifest[0]["Layers"][0] = link.name
            data = json.dumps(manifest).encode()
            entry = tarfile.TarInfo("manifest.json")
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
        refuse(store, bad, word)


def test_not_an_archive(store: Store, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_text("this is not a tar archive\n" * 100)
    refuse(store, junk, "not a tar archive")
    refuse(store, tmp_path / "absent.tar", "No such file")


def test_second_image_broken_names_nothing(store: Store, docker_archive: Path, tmp_path: Path) -> None:
    """Two images, the second's layer missing: the first gets no name either."""
    def edit(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        second = {**manifest[0], "RepoTags": ["test/two:latest"]}
        second["Layers"] = [*second["Layers"][:-1], "gone.tar"]
        return json.dumps([manifest[0], second]).encode()

    refuse(store, rewrite(docker_archive, tmp_path / "bad.tar", edit), "'gone.tar'", "missing")


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["docker", "oci"])
def test_cli_load_images_run(carrier: Carrier, docker_archive: Path, oci_archive: Path, kind: str) -> None:
    """``carrier load -i``, then ``images`` lists it and ``run`` applies the layers' whiteouts."""
    res = carrier("load", "-i", str(docker_archive if kind == "docker" else oci_archive))
    assert res.code == 0, res.err
    assert res.out.strip() == "Loaded image: test/bb:latest"
    res = carrier("images")
    assert res.code == 0, res.err
    assert "test/bb" in res.out, res.out
    res = carrier("run", "--rm", "test/bb")
    assert (res.code, res.out) == (0, HELLO), res.err
    script = "test ! -e /etc/removed && test ! -e /opq/old && cat /opq/new && pwd"
    res = carrier("run", "--rm", "test/bb", script)
    assert (res.code, res.out) == (0, "new\n/opq\n"), res.err


def test_cli_platform(carrier: Carrier, multi: tuple[Path, dict[str, Any]]) -> None:
    archive, info = multi
    res = carrier("load", "--platform", OTHER, "-i", str(archive))
    assert (res.code, res.out.strip()) == (0, "Loaded image: test/multi:1"), res.err
    res = carrier("images", "--format", "json")
    assert res.code == 0, res.err
    assert [i["Id"] for i in json.loads(res.out)] == [info["configs"][OTHER]]


def test_cli_refusals(carrier: Carrier, docker_archive: Path, tmp_path: Path) -> None:
    """Each broken archive: exit 125, one line, no traceback, ``carrier images`` unchanged."""
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\0garbage" * 1000)
    corrupt = rewrite(docker_archive, tmp_path / "corrupt.tar",
                      lambda n, d: d.replace(b"hello from layer 2", b"hello from layer X"))

    def escape(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        manifest[0]["Layers"][0] = "../etc/passwd"
        return json.dumps(manifest).encode()

    escaping = rewrite(docker_archive, tmp_path / "escape.tar", escape)
    missing = rewrite(docker_archive, tmp_path / "missing.tar",
                      lambda n, d: None if n.endswith(".json") and n != "manifest.json" else d)
    before = carrier("images")
    assert before.code == 0, before.err
    for bad in (junk, corrupt, escaping, missing):
        res = carrier("load", "-i", str(bad))
        assert res.code == 125, (bad, res.out, res.err)
        assert len(res.err.strip().splitlines()) == 1, res.err
        assert "Traceback" not in res.err, res.err
        assert bad.name in res.err, res.err
        assert carrier("images").out == before.out


def test_host_platform_names_the_machine() -> None:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine())
    if arch is None:
        pytest.skip(f"untested machine {platform.machine()}")
    assert str(Platform.host()) == f"linux/{arch}"
