"""Images for tests that have no registry: a root filesystem directory or tarball, imported."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from .._images._store import Store
from .._util._root import Root


def build_image(source: Path | str, reference: str, *, root: Path | str | None = None) -> str:
    """Import the root filesystem *source* (a directory, or a tarball as ``carrier import``
    takes) as image *reference* in the Carrier *root*; return *reference* for ``carrier.run``.

    A directory is packed first (symlinks kept, as they are), so what the container sees is
    exactly the directory's tree.
    """
    source = Path(source)
    store = Store(Root.open(root))
    if not source.is_dir():
        store.import_rootfs(source, reference)
        return reference
    with tempfile.TemporaryDirectory(prefix="carrier-image-") as work:
        archive = Path(work) / f"{source.name or 'rootfs'}.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(source, arcname=".")
        store.import_rootfs(archive, reference)
    return reference
