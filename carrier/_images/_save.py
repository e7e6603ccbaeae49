"""``carrier save``: images as a ``docker save`` archive or an OCI image-layout archive, the two
forms ``carrier load`` and ``podman load`` read.

Layers are stored unpacked (``_layers``), so each is packed again into a tar: entries sorted,
owned by the container's root, overlay whiteouts turned back into OCI ``.wh.`` entries. That
tar is not byte for byte the one the layer came from, so the saved image has new diff ids, and
with them a new config and image id (the same on every save of the same image).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from .._util._errors import CarrierError
from ._extract import tarfile
from ._layers import OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX
from ._reference import Reference
from ._store import Image, Store

__all__ = ["Saving", "save"]

SaveFormat = Literal["docker-archive", "oci-archive"]
_LAYER = "application/vnd.oci.image.layer.v1.tar"
_CONFIG = "application/vnd.oci.image.config.v1+json"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Saving:
    """One image to save and the names to give it in the archive."""

    image: Image
    refs: tuple[Reference, ...]


@dataclass
class _Packed:
    """A layer packed into a temporary tar: its digest and size."""

    path: Path
    digest: str
    size: int


def save(store: Store, images: Sequence[Saving], out: Path | BinaryIO, fmt: SaveFormat) -> None:
    """Write *images* to the archive *out*: a file, atomically (it appears only once
    complete), or a stream such as standard output (``carrier save IMG > FILE``)."""
    if fmt not in ("docker-archive", "oci-archive"):
        raise CarrierError(f"unsupported --format {fmt!r}: docker-archive or oci-archive")
    if fmt == "oci-archive" and len(images) != 1:  # Podman reads one image from an OCI archive
        raise CarrierError("an oci-archive holds one image: save several as docker-archive")
    if isinstance(out, Path):
        out = out.absolute()
        if not out.parent.is_dir():
            raise CarrierError(f"cannot write {out}: no such directory {out.parent}")
    with tempfile.TemporaryDirectory(prefix=".save.", dir=store.root.tmp) as work:
        packed: dict[str, _Packed] = {}
        for item in images:
            for diff_id in item.image.diff_ids:
                if diff_id not in packed:
                    packed[diff_id] = _pack(store.layers.path(diff_id), Path(work))
        if not isinstance(out, Path):
            _write(out, fmt, images, packed)
            return
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                _write(f, fmt, images, packed)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _write(f: BinaryIO, fmt: SaveFormat, images: Sequence[Saving],
           packed: dict[str, _Packed]) -> None:
    """The archive itself, streamed to *f* (no seeking: a pipe will do)."""
    with tarfile.open(fileobj=f, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        writer = _docker if fmt == "docker-archive" else _oci
        writer(tar, images, packed)


def _config(image: Image, packed: dict[str, _Packed]) -> bytes:
    """The image's config with the diff ids of the layers as packed now."""
    config: dict[str, Any] = json.loads(json.dumps(image.config))
    config.setdefault("rootfs", {})["type"] = "layers"
    config["rootfs"]["diff_ids"] = [packed[d].digest for d in image.diff_ids]
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def _docker(tar: tarfile.TarFile, images: Sequence[Saving], packed: dict[str, _Packed]) -> None:
    """``docker save``'s layout: ``manifest.json``, ``<hex>.json`` configs, ``<hex>/layer.tar``."""
    written: set[str] = set()
    manifest = []
    for item in images:
        config = _config(item.image, packed)
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        if config_name not in written:
            written.add(config_name)
            _add_bytes(tar, config_name, config)
        layers = []
        for diff_id in item.image.diff_ids:
            name = f"{packed[diff_id].digest.removeprefix('sha256:')}/layer.tar"
            if name not in written:
                written.add(name)
                tar.add(packed[diff_id].path, arcname=name, recursive=False, filter=_plain)
            layers.append(name)
        manifest.append({"Config": config_name, "RepoTags": [str(r) for r in item.refs],
                         "Layers": layers})
    _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())


def _oci(tar: tarfile.TarFile, images: Sequence[Saving], packed: dict[str, _Packed]) -> None:
    """An OCI image layout: ``oci-layout``, ``index.json`` and ``blobs/sha256/``, with one entry
    per image named by its first name in ``org.opencontainers.image.ref.name`` (and in
    containerd's full-name annotation), since ``podman load`` refuses an index of several."""
    written: set[str] = set()

    def blob(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest not in written:
            written.add(digest)
            _add_bytes(tar, f"blobs/sha256/{digest.removeprefix('sha256:')}", data)
        return {"digest": digest, "size": len(data)}

    _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    index = []
    for item in images:
        layers = []
        for diff_id in item.image.diff_ids:
            p = packed[diff_id]
            if p.digest not in written:
                written.add(p.digest)
                tar.add(p.path, arcname=f"blobs/sha256/{p.digest.removeprefix('sha256:')}",
                        recursive=False, filter=_plain)
            layers.append({"mediaType": _LAYER, "digest": p.digest, "size": p.size})
        manifest = {"schemaVersion": 2, "mediaType": _MANIFEST,
                    "config": {"mediaType": _CONFIG, **blob(_config(item.image, packed))},
                    "layers": layers}
        desc = {"mediaType": _MANIFEST, **blob(json.dumps(manifest).encode())}
        ref = item.refs[0] if item.refs else None  # one entry: Podman loads no more
        annotations = {} if ref is None else {"io.containerd.image.name": str(ref),
                                              "org.opencontainers.image.ref.name": str(ref)}
        index.append({**desc, **({"annotations": annotations} if annotations else {})})
    _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": index}).encode())


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """An archive member of ours: owned by root, read by all, no time of its own."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    info.mtime = 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _plain(tarfile.TarInfo(name))
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _pack(tree: Path, work: Path) -> _Packed:
    """Pack the unpacked layer *tree* into a tar in *work*, hashing it as it is written."""
    fd, name = tempfile.mkstemp(prefix="layer.", dir=work)
    path = Path(name)
    with os.fdopen(fd, "w+b") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member, source in _members(tar, tree):
                if source is None:
                    tar.addfile(member)
                else:
                    with source.open("rb") as data:
                        tar.addfile(member, data)
        f.seek(0)
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        size = f.tell()
    return _Packed(path, f"sha256:{digest}", size)


def _members(tar: tarfile.TarFile, tree: Path) -> Iterator[tuple[tarfile.TarInfo, Path | None]]:
    """The layer's entries in a stable order, as OCI layer tar members (whiteouts included)."""
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        here = Path(dirpath)
        rel = here.relative_to(tree)
        if rel != Path("."):
            yield _owned(tar.gettarinfo(here, arcname=str(rel))), None
        with contextlib.suppress(OSError):
            if os.getxattr(here, OPAQUE_XATTR, follow_symlinks=False) == b"y":
                yield _empty(str(rel / OPAQUE_MARKER) if rel != Path(".") else OPAQUE_MARKER), None
        for name in sorted(filenames + [d for d in dirnames if (here / d).is_symlink()]):
            path = here / name
            arcname = str(path.relative_to(tree))
            st = os.lstat(path)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # an overlay whiteout
                yield _empty(str(Path(arcname).parent / f"{WHITEOUT_PREFIX}{name}")
                             .removeprefix("./")), None
                continue
            found = tar.gettarinfo(path, arcname=arcname)
            if found is None:  # a socket: tar has no form for it
                continue
            info = _owned(found)
            yield info, path if info.isreg() else None


def _owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Rootless layers are stored as the user's files; in the image they are root's."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _empty(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o600
    return info
