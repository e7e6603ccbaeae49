"""The local image store: image configs by digest, the shared layers, and a name index.

Layout under the Carrier root (OCI-shaped):

- ``blobs/sha256/<hex>``: immutable small blobs named by their digest (image configs).
- ``layers/sha256/<diff-id hex>/``: each layer unpacked once, shared by every image (``_layers``).
- ``images.json``: ``{"version": 1, "images": {"docker.io/library/busybox:latest":
  "sha256:<config digest>"}}``; the config digest is the image id. Names are stored fully
  qualified (``_reference``). Version 0 (no ``version``) was the bare name map; it is read as
  is and written as version 1. Keys and entries this version does not know are kept.
  A damaged file (not JSON, wrong shape) is reported once, read as empty, and moved aside to
  ``images.json.damaged`` before the next write: never overwritten silently.

An image config is an OCI image config (``config.Env``, ``Cmd``, ``Entrypoint``, ``WorkingDir``,
``User``, and ``rootfs.diff_ids`` naming its layers in order).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._util._atomic import locked, read_json, write_bytes, write_json
from .._util._errors import CarrierError, NotFoundError
from .._util._logging import log
from .._util._root import Root
from ._layers import Layers
from ._platform import Platform
from ._reference import Reference

INDEX_VERSION = 1
"""The version of ``images.json`` this Carrier writes."""
_warned: set[str] = set()  # damaged files already reported by this process


def familiar(name: str) -> str:
    """How Docker shows a stored (fully qualified) name: ``busybox:latest``."""
    try:
        return Reference.parse(name).familiar
    except CarrierError:
        return name


@dataclass(frozen=True)
class Image:
    """An image in the store: its names, id (config digest), config and layer directories."""

    id: str
    names: tuple[str, ...]
    config: dict[str, Any]
    diff_ids: tuple[str, ...]
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
        self.layers = Layers(root)

    # -- reading --------------------------------------------------------------------------

    def _document(self) -> dict[str, Any] | None:
        """``images.json`` as stored (version 0 lifted to the current shape): ``{}`` if there
        is none, None (after one warning line naming it) if it is damaged."""
        path = self.root.images_file
        try:
            data = read_json(path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            self._damaged(f"not JSON: {e}" if isinstance(e, ValueError) else str(e))
            return None
        if not isinstance(data, dict):
            self._damaged("not a JSON object")
            return None
        if "version" not in data:  # version 0: the bare name map
            return {"images": data}
        if (not isinstance(data["version"], int) or isinstance(data["version"], bool)
                or not isinstance(data.get("images", {}), dict)):
            self._damaged("its version or images are of the wrong type")
            return None
        return data

    def _damaged(self, problem: str) -> None:
        """Report a damage of ``images.json`` once per process, as one line naming it."""
        path = str(self.root.images_file)
        if path not in _warned:
            _warned.add(path)
            log.warning("images.damaged", file=path, problem=problem)

    def _index(self) -> dict[str, str]:
        """The readable part of the index: fully qualified name -> image id."""
        document = self._document() or {}
        index: dict[str, str] = {}
        for name, digest in (document.get("images") or {}).items():
            if isinstance(digest, str):
                with contextlib.suppress(CarrierError):  # older roots stored short names
                    index[str(Reference.parse(str(name)))] = digest
        return index

    def _update(self, change: dict[str, str | None]) -> dict[str, str]:
        """Set (or, for None, remove) names in ``images.json`` under its lock; keep what this
        version does not know; move a damaged file aside first. Returns the new index."""
        with locked(self.root.images_lock):
            document = self._document()
            if document is None:
                aside = self.root.images_file.with_name("images.json.damaged")
                self.root.images_file.replace(aside)
                log.warning("images.moved-aside", file=str(self.root.images_file), to=str(aside))
                document = {}
            entries: dict[str, Any] = {}
            for name, digest in (document.get("images") or {}).items():
                try:  # version 0 kept short names: store them qualified
                    entries[str(Reference.parse(str(name)))] = digest
                except CarrierError:
                    entries[name] = digest
            for name, target in change.items():
                if target is None:
                    entries.pop(name, None)
                else:
                    entries[name] = target
            version = max(INDEX_VERSION, int(document.get("version", 0)))
            write_json(self.root.images_file, {**document, "version": version, "images": entries})
        return self._index()

    def images(self) -> list[Image]:
        """Every image, once each, with all its names (untagged images too)."""
        index = self._index()
        ids = {d for d in index.values()}
        ids.update(f"sha256:{p.name}" for p in self.root.blobs.iterdir() if self._is_config(p))
        found = []
        for digest in sorted(ids):
            try:
                found.append(self._load(digest, self._names_of(digest, index)))
            except (CarrierError, OSError, ValueError, AttributeError) as e:  # a bad entry
                self._damaged(f"{digest}: {e}")
        return found

    def _is_config(self, path: Path) -> bool:
        """Whether a blob is an image config (rather than, say, a manifest)."""
        if path.name.startswith(".") or path.stat().st_size > 4 << 20:
            return False
        try:
            data = json.loads(path.read_bytes())
        except ValueError:
            return False
        return isinstance(data, dict) and isinstance(data.get("rootfs"), dict)

    def get(self, ref: str) -> Image:
        """Find an image by reference (``busybox``, ``host:5000/ns/x:1``), id or unique id prefix."""
        index = self._index()
        hexpart = ref.removeprefix("sha256:")
        if re.fullmatch(r"[0-9a-f]{6,64}", hexpart):
            ids = {f"sha256:{p.name}" for p in self.root.blobs.glob(f"{hexpart}*")
                   if self._is_config(p)}
            if len(ids) == 1:
                digest = ids.pop()
                return self._load(digest, self._names_of(digest, index))
        with contextlib.suppress(CarrierError):
            if (found := index.get(str(Reference.parse(ref)))) is not None:
                return self._load(found, self._names_of(found, index))
        raise NotFoundError(f"no such image: {ref}")

    @staticmethod
    def _names_of(digest: str, index: dict[str, str]) -> tuple[str, ...]:
        return tuple(sorted(n for n, d in index.items() if d == digest))

    def _load(self, digest: str, names: tuple[str, ...]) -> Image:
        config = read_json(self.blob_path(digest))
        diff_ids = tuple(str(d) for d in config.get("rootfs", {}).get("diff_ids", []))
        layers = tuple(self.layers.path(d) for d in diff_ids)
        size = sum(self.layers.size(d) for d in diff_ids)
        return Image(id=digest, names=names, config=config, diff_ids=diff_ids, layers=layers,
                     size=size)

    def blob_path(self, digest: str) -> Path:
        """The file holding blob *digest* (``sha256:<hex>``)."""
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
            raise CarrierError(f"invalid digest {digest!r}")
        return self.root.blobs / hexpart

    def has_blob(self, digest: str) -> bool:
        """Whether blob *digest* is stored."""
        return self.blob_path(digest).exists()

    # -- writing --------------------------------------------------------------------------

    def add_blob(self, data: bytes) -> str:
        """Store *data* under its digest and return the digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            write_bytes(path, data, mode=0o644)
        return digest

    def add_image(self, config: bytes, refs: Sequence[Reference]) -> Image:
        """Store an image config whose layers are all present, and tag it with *refs*."""
        try:
            parsed = json.loads(config)
            diff_ids = [str(d) for d in parsed["rootfs"]["diff_ids"]]
        except (ValueError, KeyError, TypeError):
            raise CarrierError("invalid image config: no rootfs.diff_ids") from None
        missing = [d for d in diff_ids if not self.layers.has(d)]
        if missing:
            raise CarrierError(f"image config names a layer that is not stored: {missing[0]}")
        digest = self.add_blob(config)
        index = self._update({str(ref): digest for ref in refs})
        return self._load(digest, self._names_of(digest, index))

    def tag(self, image: Image, refs: Sequence[Reference]) -> Image:
        """Give *image* the names *refs* too (a name another image had moves to this one)."""
        index = self._update({str(ref): image.id for ref in refs})
        return self._load(image.id, self._names_of(image.id, index))

    def untag(self, names: Sequence[str]) -> None:
        """Remove the names (fully qualified) from the index."""
        self._update(dict.fromkeys(names))

    def remove_image(self, image: Image) -> None:
        """Forget *image*: its names and its config (its layers stay until pruned)."""
        self.untag(image.names)
        self.blob_path(image.id).unlink(missing_ok=True)

    def import_rootfs(self, archive: Path, ref: str) -> Image:
        """Import a plain root filesystem tarball (optionally compressed) as image *ref*.

        Nothing in the store changes unless the whole import succeeds.
        """
        reference = Reference.parse(ref)
        if archive.is_dir():
            raise CarrierError(f"cannot import {archive}: it is a directory, and import takes a "
                               f"tarball (make one with: tar -C {archive} -cf rootfs.tar .)")
        if not archive.is_file():
            raise CarrierError(f"cannot read {archive}: no such file")
        with locked(self.root.gc_lock, shared=True):  # no prune in between
            diff_id = self.layers.add(archive, label=archive.name)
            config = {
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "architecture": Platform.host().architecture,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created_by": f"carrier import {archive.name}"}],
            }
            return self.add_image(json.dumps(config, sort_keys=True).encode(), [reference])
