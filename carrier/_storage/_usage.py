"""Disk usage of images, containers and volumes (``carrier system df``): how many there are,
how many are in use, the space they take and the space that removing the unused ones frees."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from .._images._store import Store
from .._state._records import Containers, Status
from .._util._root import Root
from ._mounts import volume_users
from ._volumes import Volumes


@dataclass(frozen=True)
class Usage:
    """One row of ``system df``: sizes in bytes on disk."""

    kind: str
    total: int
    active: int
    size: int
    reclaimable: int


def disk_usage(path: Path) -> int:
    """Bytes the files under *path* take on disk (blocks; each hard-linked inode once). Files
    this user cannot read (written by another uid of a container) are left out."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def usage(root: Root) -> list[Usage]:
    """Images (their unique layers and configs), containers (their directories) and volumes."""
    store = Store(root)
    containers = Containers(root)
    records = list(containers.all())
    used_images = {r.spec.image_id for r in records}
    images = store.images()
    layer_size = {d: disk_usage(store.layers.path(d).parent) for i in images for d in i.diff_ids}
    kept = {d for i in images if i.id in used_images for d in i.diff_ids}
    images_row = Usage("Images", len(images), sum(1 for i in images if i.id in used_images),
                       sum(layer_size.values()),
                       sum(s for d, s in layer_size.items() if d not in kept))
    sizes = {r.id: disk_usage(containers.dir(r.id)) for r in records}
    running = [r for r in records if r.status is Status.RUNNING or containers.supervisor_alive(r.id)]
    containers_row = Usage("Containers", len(records), len(running), sum(sizes.values()),
                           sum(sizes.values()) - sum(sizes[r.id] for r in running))
    volumes = Volumes(root)
    names = volumes.names()
    vsize = {n: disk_usage(volumes.data(n)) for n in names}
    used = [n for n in names if volume_users(root, n)]
    volumes_row = Usage("Local Volumes", len(names), len(used), sum(vsize.values()),
                        sum(vsize.values()) - sum(vsize[n] for n in used))
    return [images_row, containers_row, volumes_row]
