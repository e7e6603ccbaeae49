"""Where Carrier keeps its files: the Carrier root and its layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_root() -> Path:
    """``$CARRIER_ROOT``, else ``$XDG_DATA_HOME/carrier``, else ``~/.local/share/carrier``."""
    if env := os.environ.get("CARRIER_ROOT"):
        return Path(env)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "carrier"


@dataclass(frozen=True)
class Root:
    """The directory tree under one Carrier root. Every directory is private (0700)."""

    path: Path

    @classmethod
    def open(cls, path: Path | str | None = None) -> Root:
        """Open (and create if needed) the Carrier root at *path* or the default one."""
        root = cls(Path(path).absolute() if path is not None else default_root().absolute())
        for d in (root.path, root.blobs, root.layers, root.containers, root.names, root.runtime,
                  root.tmp):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return root

    @property
    def blobs(self) -> Path:
        """Content-addressed blobs: ``blobs/sha256/<hex>`` (image configs and manifests)."""
        return self.path / "blobs" / "sha256"

    @property
    def layers(self) -> Path:
        """Unpacked layers, keyed by the digest of the uncompressed tar (the diff id); see ``_layers``."""
        return self.path / "layers" / "sha256"

    @property
    def tmp(self) -> Path:
        """Partial downloads and staging files: never trusted, removed by the next pull or prune."""
        return self.path / "tmp"

    @property
    def images_file(self) -> Path:
        """The index from image names to config digests."""
        return self.path / "images.json"

    @property
    def images_lock(self) -> Path:
        """Serialises writers of :attr:`images_file`."""
        return self.path / "images.lock"

    @property
    def gc_lock(self) -> Path:
        """Held shared by whatever adds layers and images, exclusively by what deletes them, so
        that a prune never removes a layer a pull has unpacked but not yet tagged."""
        return self.path / "gc.lock"

    @property
    def containers(self) -> Path:
        """One directory per container, named by its full id."""
        return self.path / "containers"

    @property
    def names(self) -> Path:
        """Name reservations: ``names/<name>`` is a symlink to the container's id."""
        return self.path / "names"

    @property
    def runtime(self) -> Path:
        """The OCI runtime's own state directory (``runc --root``)."""
        return self.path / "runtime"
