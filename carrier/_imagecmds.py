"""The image commands: ``images``, ``pull``, ``load``, ``import``, ``rmi``, ``login``, ``system
prune`` and ``system info``, on top of the store (``_store``), the registry client (``_pull``)
and the archive reader (``_archive``)."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import sys
import time
from pathlib import Path

from . import _storage
from ._atomic import locked
from ._errors import CarrierError, ConflictError
from ._extract import remove_tree
from ._format import ago, size, table
from ._reference import Reference
from ._root import Root
from ._state import Containers, Status
from ._store import Image, Store, familiar


def pull(ref: str, platform: str | None, tls_verify: bool | None) -> int:
    """``carrier pull``: prints the image id, as ``podman pull`` does."""
    import anyio

    from ._ensure import pull_showing_progress

    image = anyio.run(lambda: pull_showing_progress(Root.open(), ref, platform, tls_verify))
    print(image.id)
    return 0


def login(registry: str, username: str | None, password_stdin: bool, tls_verify: bool | None) -> int:
    """``carrier login``: check the credentials against the registry, then store them."""
    from . import _auth
    from ._registry import check_login

    domain = Reference.parse(f"{registry}/x").domain
    user = username or input("Username: ")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("Password: ")
    import anyio

    anyio.run(lambda: check_login(domain, user, password, tls_verify=tls_verify))
    path = _auth.login(domain, user, password)
    print(f"Login Succeeded (credentials in {path})")
    return 0


def logout(registry: str) -> int:
    """``carrier logout``."""
    from . import _auth

    domain = Reference.parse(f"{registry}/x").domain
    if not _auth.logout(domain):
        raise CarrierError(f"not logged in to {domain}")
    print(f"Removed login credentials for {domain}")
    return 0


def load(archive: Path, platform: str | None) -> int:
    """``carrier load -i FILE``: Docker's ``Loaded image: NAME`` lines."""
    from ._archive import load as load_archive

    for loaded in load_archive(Store(Root.open()), archive, platform=platform):
        for line in loaded.messages:
            print(line)
    return 0


def import_(tarball: Path, ref: str) -> int:
    """``carrier import``: prints the new image's id."""
    image = Store(Root.open()).import_rootfs(tarball, ref)
    print(image.id)
    return 0


def images(fmt: str) -> int:
    """``carrier images``: repository, tag, id, created and size."""
    found = Store(Root.open()).images()
    if fmt == "json":
        print(json.dumps([{"Id": i.id, "Names": [familiar(n) for n in i.names],
                           "Created": i.created, "Size": i.size} for i in found], indent=2))
        return 0
    rows = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")]
    for image in found:
        for repo, tag in _repo_tags(image):
            rows.append((repo, tag, image.id.removeprefix("sha256:")[:12],
                         f"{ago(image.created)} ago", size(image.size)))
    table(rows)
    return 0


def _repo_tags(image: Image) -> list[tuple[str, str]]:
    """(repository, tag) in Docker's short form for each name; ``<none>`` where absent."""
    pairs = []
    for name in image.names:
        ref = Reference.parse(name)
        pairs.append((Reference(ref.domain, ref.path, None, None).familiar, ref.tag or "<none>"))
    return pairs or [("<none>", "<none>")]


def _users(root: Root) -> dict[str, list[str]]:
    """Image id -> the names of the containers created from it."""
    users: dict[str, list[str]] = {}
    for record in Containers(root).all():
        users.setdefault(record.spec.image_id, []).append(record.name)
    return users


def rmi(refs: list[str], force: bool) -> int:
    """``carrier rmi``: refuses an image a container uses unless ``-f`` (which then only
    untags it: the container keeps its layers)."""
    root = Root.open()
    store = Store(root)
    with locked(root.gc_lock):  # no container is created from these images meanwhile
        users = _users(root)
        found = [store.get(ref) for ref in refs]  # every name is checked before anything changes
        for ref, image in zip(refs, found, strict=True):
            if image.id in users and not force:
                raise ConflictError(f"cannot remove image {ref}: container {users[image.id][0]} "
                                    f"uses it (remove the container first, or use -f)")
        for ref, image in zip(refs, found, strict=True):
            named = _named(ref, image)
            if len(image.names) > 1 and named is not None:  # one of several names: untag it
                store.untag([named])
                print(f"Untagged: {familiar(named)}")
                continue
            for name in image.names:
                print(f"Untagged: {familiar(name)}")
            if image.id in users:
                store.untag(image.names)
            else:
                store.remove_image(image)
                _prune_layers(store)
                print(f"Deleted: {image.id}")
    return 0


def _named(ref: str, image: Image) -> str | None:
    try:
        full = str(Reference.parse(ref))
    except CarrierError:
        return None
    return full if full in image.names else None


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _prune_layers(store: Store) -> int:
    """Delete the layers no stored image names; return the bytes freed on disk."""
    used = {d for image in store.images() for d in image.diff_ids}
    freed = 0
    for diff_id in store.layers.all():
        if diff_id not in used:
            freed += _du(store.layers.path(diff_id))
            store.layers.remove(diff_id)
    stale = time.time() - 3600
    for entry in store.layers.dir.iterdir():
        crashed = entry.name.startswith((".unpack.", ".remove.")) and entry.stat().st_mtime < stale
        incomplete = not entry.name.startswith(".") and not (entry / "size").exists()
        if crashed or incomplete:  # staging of a crashed unpack; a layer never completed
            freed += _du(entry)
            remove_tree(entry)
    return freed


def prune(force: bool) -> int:
    """``carrier system prune``: stopped containers, dangling images, unused layers."""
    if not force and sys.stdin.isatty():
        answer = input("This removes all stopped containers, dangling images and unused layers. "
                       "Continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    root = Root.open()
    containers = Containers(root)
    store = Store(root)
    freed = 0
    for record in list(containers.all()):
        if record.status is not Status.RUNNING and not containers.supervisor_alive(record.id):
            freed += _du(containers.dir(record.id))
            containers.remove(record)
            print(f"Deleted container: {record.name}")
    with locked(root.gc_lock):  # waits for running pulls, loads and container creations
        users = _users(root)
        for image in store.images():
            if not image.names and image.id not in users:
                store.remove_image(image)
                print(f"Deleted image: {image.id}")
        freed += _prune_layers(store)
    print(f"Total reclaimed space: {size(freed)}")
    return 0


def system_info(fmt: str) -> int:
    """``carrier system info`` (and ``carrier info`` with no argument): what this machine uses."""
    from ._nethelper import choose as choose_helper

    root = Root.open()
    drivers = _storage.probe_all(root)
    try:
        chosen = choose_helper("auto")
        helper = chosen.name if chosen is not None else "none"
    except CarrierError as e:
        helper = f"none ({e})"
    data = {
        "Root": str(root.path),
        "Rootless": os.geteuid() != 0,
        "StorageDriver": _storage.choose(root, None),
        "StorageDrivers": {d: "usable" if why is None else f"unusable: {why}"
                           for d, why in drivers.items()},
        "Runtime": shutil.which("runc") or "runc (not found)",
        "NetworkHelper": helper,
        "Images": len(Store(root).images()),
        "Containers": sum(1 for _ in Containers(root).all()),
    }
    if fmt == "json":
        print(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for k, v in value.items():
                    print(f"  {k}: {v}")
            else:
                print(f"{key}: {value}")
    return 0
