"""``carrier load``: images from ``docker save`` archives and OCI image-layout archives (or directories).

Every blob used is checked against its digest (OCI descriptors, docker-save config names, layer diff
ids), layers are streamed through a temporary file, and no name is given to any image unless the
whole archive loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .._util._atomic import locked
from .._util._errors import CarrierError
from ._compression import DECOMPRESS_ERRORS, open_decompressed
from ._extract import tarfile
from ._platform import Platform
from ._reference import Reference
from ._store import Image, Store

__all__ = ["Loaded", "load"]

_JSON_MAX = 32 << 20  # manifests, indexes and configs are small; refuse to buffer anything bigger
_HEX_RE = re.compile(r"[0-9a-f]{64}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
_NAME = "io.containerd.image.name"
_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Loaded:
    """One image the archive held, and the names (familiar form) it was given."""

    image: Image
    names: tuple[str, ...]

    @property
    def messages(self) -> list[str]:
        """Docker's lines: ``Loaded image: NAME:TAG`` for each name, else ``Loaded image ID: ...``."""
        return [f"Loaded image: {n}" for n in self.names] or [f"Loaded image ID: {self.image.id}"]


def load(store: Store, path: Path, *, platform: str | None = None,
         label: str | None = None) -> list[Loaded]:
    """Load every image in the archive (or OCI layout directory) *path* into *store*.

    *platform* (``os/arch[/variant]``, default the host's) picks one image from a multi-arch index.
    OCI names come from ``io.containerd.image.name``, else from ``org.opencontainers.image.ref.name``
    when that is a reference; a bare tag there (``latest``) names no repository: the image is untagged.
    *label* names the archive in errors (default: *path*).
    """
    with locked(store.root.gc_lock, shared=True), _open_source(store, path, label) as source:
        images = _docker_images(source) if source.has("manifest.json") else _oci_images(
            source, _want(platform, source)
        )
        if not images:
            raise source.fail("the archive holds no images")
        for pending in images:  # every layer first: a failure leaves no name behind
            for member, diff_id, digest in pending.layers:
                _add_layer(store, source, member, diff_id, digest)
        loaded: dict[str, Loaded] = {}
        for pending in images:
            image = store.add_image(pending.config, pending.refs)
            names = tuple(dict.fromkeys(r.familiar for r in pending.refs))
            previous = loaded.get(image.id)
            if previous is not None:
                names = tuple(dict.fromkeys(previous.names + names))
            loaded[image.id] = Loaded(image, names)
        return list(loaded.values())


# -- where the archive's files come from ---------------------------------------------------


class _Source:
    """Named files of an archive: a tar (members by normalised name) or a layout directory."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, what: str) -> CarrierError:
        """The one-line error naming the archive and *what* is wrong."""
        return CarrierError(f"cannot load {self.label}: {what}")

    def has(self, name: str) -> bool:
        """Whether the normalised member *name* is a file (or a link to one)."""
        raise NotImplementedError

    def size(self, name: str) -> int:
        """The size in bytes of member *name*."""
        raise NotImplementedError

    def open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Member *name* as a stream."""
        raise NotImplementedError

    def check(self, name: str, what: str) -> str:
        """*name* as a member path, refused if it would escape the archive or is absent."""
        norm = posixpath.normpath(name) if name else ""
        if not name or name.startswith("/") or norm == ".." or norm.startswith("../"):
            raise self.fail(f"{what} {name!r} is outside the archive")
        norm = norm.removeprefix("./")
        if not self.has(norm):
            raise self.fail(f"{what} {name!r} is missing from the archive")
        return norm

    def read(self, name: str, what: str, digest: str | None = None) -> bytes:
        """A small member's bytes, verified against *digest* if given."""
        name = self.check(name, what)
        if self.size(name) > _JSON_MAX:
            raise self.fail(f"{what} {name!r} is too large")
        with self.open(name) as f:
            data = f.read(_JSON_MAX + 1)
        if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise self.fail(f"{what} {name!r} does not match its digest {digest}")
        return data

    def json(self, name: str, what: str, digest: str | None = None) -> Any:
        """A small member parsed as JSON (verified against *digest* if given)."""
        data = self.read(name, what, digest)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise self.fail(f"{what} {name!r} is not valid JSON ({e})") from None


class _TarSource(_Source):
    """The files of a (decompressed) tar; links are followed only to other members."""

    def __init__(self, label: str, tar: tarfile.TarFile) -> None:
        super().__init__(label)
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            if m.isfile() or m.issym() or m.islnk():
                self.members[posixpath.normpath(m.name).removeprefix("./")] = m

    def has(self, name: str) -> bool:
        return name in self.members

    def _target(self, name: str) -> tarfile.TarInfo:
        """The regular file that *name* is or links to, following links only inside the archive."""
        member = self.members[name]
        for _ in range(16):
            if member.isfile():
                return member
            base = posixpath.dirname(name) if member.issym() else ""
            link = posixpath.normpath(posixpath.join(base, member.linkname))
            if member.linkname.startswith("/") or link == ".." or link.startswith("../"):
                raise self.fail(f"{name!r} links to {member.linkname!r}, outside the archive")
            name = link.removeprefix("./")
            if name not in self.members:
                raise self.fail(f"{name!r} (a link target) is missing from the archive")
            member = self.members[name]
        raise self.fail(f"{name!r}: too many levels of links")

    def size(self, name: str) -> int:
        return int(self._target(name).size)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        f = self.tar.extractfile(self._target(name))
        assert f is not None  # a regular file always has a file object
        with f:
            yield f


class _DirSource(_Source):
    """The files of an OCI layout directory; nothing outside it is read."""

    def __init__(self, label: str, path: Path) -> None:
        super().__init__(label)
        self.path = path.resolve()

    def _file(self, name: str) -> Path | None:
        p = (self.path / name).resolve()
        if p.is_relative_to(self.path) and p.is_file():
            return p
        return None

    def has(self, name: str) -> bool:
        return self._file(name) is not None

    def size(self, name: str) -> int:
        p = self._file(name)
        return p.stat().st_size if p else 0

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        p = self._file(name)
        if p is None:
            raise self.fail(f"{name!r} is missing")
        with p.open("rb") as f:
            yield f


@contextlib.contextmanager
def _open_source(store: Store, path: Path, label: str | None) -> Iterator[_Source]:
    label = str(path) if label is None else label
    if path.is_dir():
        if not (path / "index.json").is_file() and not (path / "manifest.json").is_file():
            raise CarrierError(f"cannot load {label}: not an OCI layout (no index.json)")
        yield _DirSource(label, path)
        return
    try:
        f: IO[bytes] = path.open("rb")
    except OSError as e:
        raise CarrierError(f"cannot load {label}: {e.strerror}") from None
    with contextlib.ExitStack() as stack:
        stack.enter_context(f)
        stream = stack.enter_context(open_decompressed(f, f"cannot load {label}"))
        if stream is not f:  # random access into a compressed stream is slow: unpack it once
            f = stack.enter_context(_decompressed_copy(store, label, stream))
        try:
            tar = stack.enter_context(tarfile.open(fileobj=f, mode="r:"))
            source = _TarSource(label, tar)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise CarrierError(f"cannot load {label}: not a tar archive ({e})") from None
        yield source


@contextlib.contextmanager
def _decompressed_copy(store: Store, label: str, stream: IO[bytes]) -> Iterator[IO[bytes]]:
    with tempfile.TemporaryFile(dir=store.root.tmp, prefix=".load.") as out:
        try:
            shutil.copyfileobj(stream, out, 1 << 20)
        except DECOMPRESS_ERRORS as e:
            raise CarrierError(f"cannot load {label}: cannot decompress it ({e})") from None
        out.seek(0)
        yield out


# -- what to load --------------------------------------------------------------------------


@dataclass
class _Pending:
    """An image read and verified, waiting for its layers: (member, diff id, blob digest)."""

    config: bytes
    refs: list[Reference] = field(default_factory=list)
    layers: list[tuple[str, str, str | None]] = field(default_factory=list)


def _diff_ids(source: _Source, config: bytes, what: str) -> list[str]:
    try:
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise source.fail(f"{what} is not an image config (no rootfs.diff_ids)") from None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _DIGEST_RE.fullmatch(d)
                                                  for d in diff_ids):
        raise source.fail(f"{what} has invalid rootfs.diff_ids")
    return diff_ids


def _ref(source: _Source, text: Any, what: str) -> Reference:
    if not isinstance(text, str):
        raise source.fail(f"{what}: invalid name {text!r}")
    try:
        return Reference.parse(text)
    except CarrierError as e:
        raise source.fail(f"{what}: {e}") from None


def _docker_images(source: _Source) -> list[_Pending]:
    """``docker save``'s manifest.json: ``[{"Config", "RepoTags", "Layers"}]``."""
    manifest = source.json("manifest.json", "manifest")
    if not isinstance(manifest, list):
        raise source.fail("manifest.json is not a list of images")
    images = []
    for i, entry in enumerate(manifest):
        what = f"manifest.json entry {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise source.fail(f"{what} has no Config or Layers")
        config_name = entry["Config"]
        hexpart = posixpath.basename(config_name).removesuffix(".json")
        digest = f"sha256:{hexpart}" if _HEX_RE.fullmatch(hexpart) else None
        config = source.read(config_name, "config", digest)
        diff_ids = _diff_ids(source, config, f"config {config_name!r}")
        if len(diff_ids) != len(entry["Layers"]):
            raise source.fail(f"{what} lists {len(entry['Layers'])} layers, its config {len(diff_ids)}")
        pending = _Pending(config)
        for layer, diff_id in zip(entry["Layers"], diff_ids, strict=True):
            if not isinstance(layer, str):
                raise source.fail(f"{what} has an invalid layer {layer!r}")
            pending.layers.append((source.check(layer, "layer"), diff_id, None))
        pending.refs = [_ref(source, t, what) for t in entry.get("RepoTags") or []]
        images.append(pending)
    return images


def _want(text: str | None, source: _Source) -> Platform:
    """The platform asked for (default: the host's), or a one-line error naming the archive."""
    try:
        return Platform.parse(text) if text else Platform.host()
    except CarrierError as e:
        raise source.fail(str(e)) from None


def _descriptor(source: _Source, desc: Any, what: str) -> tuple[str, str]:
    """A descriptor's digest and member path (``blobs/sha256/<hex>``), checked."""
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise source.fail(f"{what} has no digest")
    digest = desc["digest"]
    if not _DIGEST_RE.fullmatch(digest):
        raise source.fail(f"{what} has an unsupported or invalid digest {digest!r}")
    member = source.check(f"blobs/sha256/{digest[7:]}", f"{what} blob")
    size = desc.get("size")
    if isinstance(size, int) and source.size(member) != size:
        raise source.fail(f"{what} blob {digest} has size {source.size(member)}, expected {size}")
    return digest, member


def _oci_images(source: _Source, want: Platform) -> list[_Pending]:
    """An OCI layout's index.json: image manifests, or nested indexes to pick *want* from."""
    if source.has("oci-layout"):
        layout = source.json("oci-layout", "layout file")
        if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
            raise source.fail("unsupported oci-layout version")
    elif not source.has("index.json"):
        raise source.fail("neither a docker save archive (manifest.json) nor an OCI layout (index.json)")
    index = source.json("index.json", "index")
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise source.fail("index.json has no manifests")
    by_digest: dict[str, _Pending] = {}
    skipped: list[str] = []
    for i, desc in enumerate(entries):
        what = f"index.json entry {i}"
        if isinstance(desc, dict) and desc.get("mediaType") in _MANIFEST_TYPES \
                and "platform" in desc and not want.matches(Platform.of(desc)):
            skipped.extend(str(p) for p in [Platform.of(desc)] if p)
            continue
        digest, pending = _resolve(source, desc, what, want, depth=0)
        pending = by_digest.setdefault(digest, pending)
        annotations = desc.get("annotations") if isinstance(desc.get("annotations"), dict) else {}
        name = annotations.get(_NAME) or annotations.get(_REF_NAME)
        if isinstance(name, str) and (_NAME in annotations or any(c in name for c in "/:@")):
            ref = _ref(source, name, what)  # a bare ref.name is only a tag: it names no repository
            if ref not in pending.refs:
                pending.refs.append(ref)
    if not by_digest and skipped:
        raise source.fail(f"no image for {want}; "
                          f"available: {', '.join(sorted(set(skipped)))}")
    return list(by_digest.values())


def _resolve(source: _Source, desc: Any, what: str, want: Platform,
             depth: int) -> tuple[str, _Pending]:
    """Follow *desc* through nested indexes to one image manifest; read its config and layers."""
    digest, member = _descriptor(source, desc, what)
    doc = source.json(member, f"{what} manifest", digest)
    media = desc.get("mediaType") or (doc.get("mediaType") if isinstance(doc, dict) else None)
    if not isinstance(doc, dict):
        raise source.fail(f"{what} manifest {digest} is not a JSON object")
    if media in _INDEX_TYPES or (media is None and "manifests" in doc):
        entries = doc.get("manifests")
        if depth > 3 or not isinstance(entries, list):
            raise source.fail(f"{what} index {digest} has no usable manifests")
        chosen = [d for d in entries if want.matches(Platform.of(d))]
        if not chosen:
            available = sorted({str(p) for d in entries if (p := Platform.of(d))})
            raise source.fail(f"{what} has no image for {want}; "
                              f"available: {', '.join(available) or 'none'}")
        exact = [d for d in chosen if Platform.of(d) == want]
        return _resolve(source, (exact or chosen)[0], what, want, depth + 1)
    if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers"), list):
        raise source.fail(f"{what} manifest {digest} has no config or layers")
    config_digest, config_member = _descriptor(source, doc["config"], f"{what} config")
    config = source.read(config_member, f"{what} config", config_digest)
    diff_ids = _diff_ids(source, config, f"config {config_digest}")
    if len(diff_ids) != len(doc["layers"]):
        raise source.fail(f"manifest {digest} lists {len(doc['layers'])} layers, its config {len(diff_ids)}")
    pending = _Pending(config)
    for layer, diff_id in zip(doc["layers"], diff_ids, strict=True):
        if isinstance(layer, dict) and "zstd" in str(layer.get("mediaType", "")):
            raise source.fail(f"layer {layer.get('digest')}: zstd-compressed layers are not supported")
        layer_digest, layer_member = _descriptor(source, layer, f"{what} layer")
        pending.layers.append((layer_member, diff_id, layer_digest))
    return digest, pending


# -- storing a layer -----------------------------------------------------------------------


def _add_layer(store: Store, source: _Source, member: str, diff_id: str, digest: str | None) -> None:
    """Stream one layer to a temporary file (verifying its blob digest) and add it to the store."""
    if store.layers.has(diff_id):
        return
    fd, tmp_name = tempfile.mkstemp(prefix=".load.", dir=store.root.tmp)
    tmp = Path(tmp_name)
    try:
        hasher = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, source.open(member) as f:
            try:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
                    out.write(chunk)
            except (OSError, EOFError, tarfile.TarError) as e:
                raise source.fail(f"cannot read {member!r} ({e})") from None
        if digest is not None and "sha256:" + hasher.hexdigest() != digest:
            raise source.fail(f"layer {member!r} does not match its digest {digest}")
        store.layers.add(tmp, label=f"{Path(source.label).name}:{member}", expected=diff_id)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
