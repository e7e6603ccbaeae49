"""The local image store: content-addressed blobs, unpacked layers and a name index.

Layout under the Carrier root (OCI-shaped, so registry pulls slot in later):

- ``blobs/sha256/<hex>``: immutable blobs named by their digest (layer tars, image configs).
- ``layers/sha256/<diff-id hex>/``: each layer unpacked once, shared by every image using it.
- ``images.json``: ``{"name:tag": "sha256:<config digest>"}``; the config digest is the image id.

An image config is an OCI image config (``config.Env``, ``Cmd``, ``Entrypoint``, ``WorkingDir``,
``User``, and ``rootfs.diff_ids`` naming its layers in order).
"""

from __future__ import annotations

import bz2
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import lzma
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import _process
from ._atomic import locked, read_json, write_bytes, write_json
from ._errors import CarrierError, NotFoundError
from ._extract import remove_tree, tarfile, unpack
from ._root import Root

_NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def parse_name(ref: str) -> tuple[str, str]:
    """Split ``NAME[:TAG]`` into name and tag (default ``latest``), checking Docker's rules."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        name, tag = ref, "latest"
    if not _NAME_RE.match(name) or not _TAG_RE.match(tag):
        raise CarrierError(f"invalid image name {ref!r}: expected NAME[:TAG] in lower case")
    return name, tag


@dataclass(frozen=True)
class Image:
    """An image in the store: its names, id (config digest), config and layer directories."""

    id: str
    names: tuple[str, ...]
    config: dict[str, Any]
    layers: tuple[Path, ...]
    size: int

    @property
    def created(self) -> str:
        """When the image was created, as RFC 3339 text."""
        return str(self.config.get("created", ""))

    @property
    def run_config(self) -> dict[str, Any]:
        """The image's runtime defaults: Env, Cmd, Entrypoint, WorkingDir, User."""
        return dict(self.config.get("config") or {})


class Store:
    """Reads and writes the image store under one Carrier root."""

    def __init__(self, root: Root) -> None:
        self.root = root

    # -- reading --------------------------------------------------------------------------

    def _index(self) -> dict[str, str]:
        try:
            data = read_json(self.root.images_file)
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def images(self) -> list[Image]:
        """Every image, once each, with all its names."""
        by_id: dict[str, list[str]] = {}
        for name, digest in sorted(self._index().items()):
            by_id.setdefault(digest, []).append(name)
        return [self._load(digest, tuple(names)) for digest, names in by_id.items()]

    def get(self, ref: str) -> Image:
        """Find an image by ``name[:tag]``, full id or unique id prefix."""
        index = self._index()
        with contextlib.suppress(CarrierError):
            name, tag = parse_name(ref)
            if (digest := index.get(f"{name}:{tag}")) is not None:
                return self._load(digest, self._names_of(digest, index))
        hexpart = ref.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]{6,64}", hexpart):
            ids = {d for d in index.values() if d.removeprefix("sha256:").startswith(hexpart)}
            if len(ids) == 1:
                digest = ids.pop()
                return self._load(digest, self._names_of(digest, index))
        raise NotFoundError(f"no such image: {ref}")

    @staticmethod
    def _names_of(digest: str, index: dict[str, str]) -> tuple[str, ...]:
        return tuple(sorted(n for n, d in index.items() if d == digest))

    def _load(self, digest: str, names: tuple[str, ...]) -> Image:
        config = read_json(self.blob_path(digest))
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = tuple(self.root.layers / d.removeprefix("sha256:") for d in diff_ids)
        size = sum(self.blob_path(d).stat().st_size for d in diff_ids)
        return Image(id=digest, names=names, config=config, layers=layers, size=size)

    def blob_path(self, digest: str) -> Path:
        """The file holding blob *digest* (``sha256:<hex>``)."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
            raise CarrierError(f"invalid digest {digest!r}")
        return self.root.blobs / hexpart

    # -- writing --------------------------------------------------------------------------

    def import_rootfs(self, archive: Path, ref: str) -> Image:
        """Import a plain root filesystem tarball (optionally compressed) as image *ref*.

        Nothing in the store changes unless the whole import succeeds.
        """
        name, tag = parse_name(ref)
        try:
            source = archive.open("rb")
        except OSError as e:
            raise CarrierError(f"cannot read {archive}: {e.strerror}") from None
        with source:
            diff_id = self._add_layer(source, archive.name)
        config = {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "architecture": _ARCH.get(platform.machine(), platform.machine()),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": f"carrier import {archive.name}"}],
        }
        digest = self.add_blob(json.dumps(config, sort_keys=True).encode())
        with locked(self.root.images_lock):
            index = self._index()
            index[f"{name}:{tag}"] = digest
            write_json(self.root.images_file, index)
        return self._load(digest, self._names_of(digest, index))

    def add_blob(self, data: bytes) -> str:
        """Store *data* under its digest and return the digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            write_bytes(path, data, mode=0o644)
        return digest

    def _add_layer(self, source: IO[bytes], label: str) -> str:
        """Store an (optionally compressed) layer tar as a blob, unpack it, return its diff id."""
        fd, tmp_name = tempfile.mkstemp(prefix=".import.", dir=self.root.blobs)
        tmp = Path(tmp_name)
        try:
            hasher = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, _decompressed(source) as stream:
                try:
                    while chunk := stream.read(1 << 20):
                        hasher.update(chunk)
                        out.write(chunk)
                except (OSError, EOFError, lzma.LZMAError) as e:
                    raise CarrierError(f"cannot read {label}: {e}") from None
            if not _is_tar(tmp):
                raise CarrierError(f"{label} is not a tar archive")
            diff_id = "sha256:" + hasher.hexdigest()
            layer_dir = self.root.layers / hasher.hexdigest()
            if not layer_dir.exists():
                staging = Path(tempfile.mkdtemp(prefix=".unpack.", dir=self.root.layers))
                try:
                    staging.rmdir()
                    unpack(tmp, staging)
                    os.rename(staging, layer_dir)
                except BaseException:
                    remove_tree(staging)
                    raise
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.blob_path(diff_id))
            return diff_id
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _is_tar(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:") as tar:
            return tar.next() is not None
    except (tarfile.TarError, EOFError):
        return False


@contextlib.contextmanager
def _decompressed(source: IO[bytes]) -> Iterator[IO[bytes]]:
    """Wrap *source* in the decompressor its magic bytes call for."""
    head = source.read(6)
    source.seek(0)
    if head.startswith(b"\x1f\x8b"):
        with gzip.GzipFile(fileobj=source) as g:
            yield g  # type: ignore[misc]  # GzipFile is a binary stream
    elif head.startswith(b"BZh"):
        with bz2.BZ2File(source) as b:
            yield b
    elif head.startswith(b"\xfd7zXZ\x00"):
        with lzma.LZMAFile(source) as x:
            yield x
    else:
        yield source


async def copy_rootfs(layers: tuple[Path, ...], dest: Path) -> None:
    """Give a container its own writable copy of the image's layers, applied in order.

    ``cp -a`` (reflinks where the filesystem has them) is an order of magnitude faster than
    ``shutil.copytree`` on a root filesystem's many small files and symlinks. (Even so, on
    these ext4 machines each ``symlinkat`` costs about 0.6 ms, so a busybox root filesystem
    takes 150 ms: the shared layers of copy-on-write storage are what removes this.)
    """
    for i, layer in enumerate(layers):
        source = str(layer) if i == 0 else f"{layer}/."  # the first one creates *dest*
        try:
            await _process.run(["cp", "-a", "--reflink=auto", source, str(dest)])
        except RuntimeError as e:
            raise CarrierError(f"cannot create the container's root filesystem: {e}") from None
