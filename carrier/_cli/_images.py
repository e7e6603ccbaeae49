"""The image commands: ``images``, ``load``, ``import``, ``tag``, ``save``, ``rmi`` and
``system info|prune``, on top of the store and the archive reader and writer (the registry's
commands are ``_registry``)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from cyclopts import Parameter

from .._util._atomic import locked
from .._util._errors import CarrierError, ConflictError
from .._util._root import Root
from ._format import ago, size, table

if TYPE_CHECKING:
    from .._images._store import Image, Store

ForceOption = Annotated[bool, Parameter(name=["-f", "--force"])]


def load(
    *,
    input: Annotated[Path | None, Parameter(name=["-i", "--input"])] = None,
    platform: str | None = None,
) -> int:
    """Load images from a `docker save` archive or an OCI image-layout archive.

    Prints Docker's ``Loaded image: NAME`` lines.

    Parameters
    ----------
    input: Path | None
        The archive (tar, optionally compressed) or an OCI layout directory; without it, the
        archive is read from standard input (``carrier load < FILE``).
    platform: str | None
        os/arch[/variant] to pick from a multi-platform archive (default: the host's).
    """
    import tempfile

    from .._images._archive import load as load_archive
    from .._images._store import Store

    store = Store(Root.open())
    if input is not None:
        loaded = load_archive(store, input, platform=platform)
    elif sys.stdin is None or sys.stdin.isatty():
        raise CarrierError("load reads the archive from -i FILE or from standard input, "
                           "which is a terminal here")
    else:  # a pipe cannot be read twice, and an archive is read out of order: spool it
        with tempfile.NamedTemporaryFile(dir=store.root.tmp, prefix=".load-stdin.") as spool:
            try:
                shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
                spool.flush()
            except OSError as e:
                raise CarrierError(f"cannot load standard input: {e.strerror}") from None
            loaded = load_archive(store, Path(spool.name), platform=platform,
                                  label="standard input")
    for image in loaded:
        for line in image.messages:
            print(line)
    return 0


def import_(tarball: Path, reference: str) -> int:
    """Import a root filesystem tarball as image REFERENCE (NAME[:TAG]); prints its id."""
    from .._images._store import Store

    image = Store(Root.open()).import_rootfs(tarball, reference)
    print(image.id)
    return 0


def images(
    *,
    format: str = "table",
    quiet: Annotated[bool, Parameter(name=["-q", "--quiet"])] = False,
) -> int:
    """List images: repository, tag, id, created and size (-q: only each image's id; --format
    table, json or a Go template such as '{{.Repository}}:{{.Tag}}').

    Parameters
    ----------
    format: str
        table (default), json, or a Go template ('{{.Repository}}:{{.Tag}}').
    quiet: bool
        Only the ids.
    """
    from .._images._store import Store, familiar
    from ._template import is_template, render

    found = Store(Root.open()).images()
    if quiet:
        for image in found:
            print(image.id.removeprefix("sha256:")[:12])
        return 0
    if is_template(format):
        items = [_image_fields(image, repo, tag) for image in found
                 for repo, tag in _repo_tags(image)]
        print(render(format, items, headers={"ID": "IMAGE ID", "CreatedSince": "CREATED"},
                     keys=IMAGE_KEYS), end="")
        return 0
    if format.strip() == "json":
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


IMAGE_KEYS = ("ID", "Repository", "Tag", "CreatedAt", "CreatedSince", "Size", "Names", "Labels")


def _image_fields(image: Image, repo: str, tag: str) -> dict[str, object]:
    """What an ``images --format`` template sees: one repository and tag of *image*, with
    Podman's field names."""
    from .._images._store import familiar

    return dict(zip(IMAGE_KEYS, (
        image.id.removeprefix("sha256:")[:12], repo, tag, image.created,
        f"{ago(image.created)} ago", size(image.size), [familiar(n) for n in image.names],
        image.run_config.get("Labels") or {}), strict=True))


def tag(source: str, *targets: str) -> int:
    """Give image SOURCE more names, TARGET as NAME[:TAG] (``latest`` when no tag is given).

    Every target is checked before any is added: one that is not a valid name, or carries a
    digest, is one line and no name changes.
    """
    from .._images._reference import Reference
    from .._images._store import Store

    if not targets:
        raise CarrierError("tag needs a source image and at least one target: "
                           "carrier tag IMAGE NAME[:TAG]...")
    refs = []
    for target in targets:
        ref = Reference.parse(target)
        if ref.digest is not None:
            raise CarrierError(f"invalid target {target!r}: a tag cannot hold a digest")
        refs.append(ref)
    root = Root.open()
    with locked(root.gc_lock, shared=True):  # the image is not pruned meanwhile
        store = Store(root)
        store.tag(store.get(source), refs)
    return 0


def save(
    *images: str,
    output: Annotated[Path | None, Parameter(name=["-o", "--output"])] = None,
    format: Literal["docker-archive", "oci-archive"] = "docker-archive",
) -> int:
    """Save images to a tar archive that ``carrier load`` and ``podman load`` read.

    Parameters
    ----------
    images: str
        Images by name or id; a name is the name the image gets in the archive, an id gives it
        all the names it has.
    output: Path | None
        The archive to write (replaced only once the new one is complete); without it, standard
        output, unless that is a terminal (``carrier save IMAGE > FILE``).
    format: Literal["docker-archive", "oci-archive"]
        docker-archive (``docker save``'s form, the default) or oci-archive (an OCI layout).
    """
    from .._images._reference import Reference
    from .._images._save import Saving
    from .._images._save import save as save_archive
    from .._images._store import Store

    if not images:
        raise CarrierError("save needs at least one image: carrier save -o FILE IMAGE...")
    if output is None and (sys.stdout is None or sys.stdout.isatty()):
        raise CarrierError("refusing to write an archive to a terminal: give -o FILE or "
                           "redirect standard output")
    root = Root.open()
    store = Store(root)
    with locked(root.gc_lock, shared=True):  # no layer is pruned while it is read
        wanted = []
        for ref in images:
            image = store.get(ref)
            named = _named(ref, image)
            refs = (Reference.parse(named),) if named is not None else tuple(
                Reference.parse(n) for n in image.names)
            wanted.append(Saving(image, refs))
        if output is None:  # a buffered writer of our own: it retries short writes
            sys.stdout.flush()
            try:
                with os.fdopen(os.dup(sys.stdout.fileno()), "wb") as out:
                    save_archive(store, wanted, out, format)
            except BrokenPipeError:  # not `ps | head`: a cut archive is a failure
                raise CarrierError("standard output closed before the archive was "
                                   "complete") from None
        else:
            save_archive(store, wanted, output, format)
    return 0


def _repo_tags(image: Image) -> list[tuple[str, str]]:
    """(repository, tag) in Docker's short form for each name; ``<none>`` where absent."""
    from .._images._reference import Reference

    pairs = []
    for name in image.names:
        ref = Reference.parse(name)
        pairs.append((Reference(ref.domain, ref.path, None, None).familiar, ref.tag or "<none>"))
    return pairs or [("<none>", "<none>")]


def _users(root: Root) -> dict[str, list[str]]:
    """Image id -> the names of the containers created from it."""
    from .._state._records import Containers

    users: dict[str, list[str]] = {}
    for record in Containers(root).all():
        users.setdefault(record.spec.image_id, []).append(record.name)
    return users


def rmi(*images: str, force: ForceOption = False) -> int:
    """Remove images; one a container uses is refused unless -f (which only untags it: the
    container keeps its layers).

    Parameters
    ----------
    force: bool
        Untag an image that containers use (they keep its layers).
    """
    from .._images._store import Store, familiar

    if not images:
        raise CarrierError("rmi needs at least one image")
    refs = list(images)

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
    from .._images._reference import Reference

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
    from .._util._fs import remove_tree

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


def prune(*, force: ForceOption = False) -> int:
    """Remove stopped containers, dangling images and unused layers; report the space freed.

    Parameters
    ----------
    force: bool
        Do not ask (needed without a terminal).
    """
    from .._images._store import Store
    from .._state._records import Containers, Status

    if not force and not sys.stdin.isatty():
        raise CarrierError("system prune deletes without asking only with -f (standard input is "
                           "not a terminal to ask on)")
    if not force:
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


def system_info(*, format: Literal["text", "json"] = "text") -> int:
    """Storage driver, runtime and network helper on this machine.

    Parameters
    ----------
    format: str
        text or json.
    """
    from .._images._store import Store
    from .._network._choice import choose as choose_helper
    from .._state._records import Containers
    from .._storage import _choice as storage_choice


    root = Root.open()
    drivers = storage_choice.probe_all(root)
    try:
        chosen = choose_helper("auto")
        helper = chosen.name if chosen is not None else "none"
    except CarrierError as e:
        helper = f"none ({e})"
    data = {
        "Root": str(root.path),
        "Rootless": os.geteuid() != 0,
        "StorageDriver": storage_choice.choose(root, None),
        "StorageDrivers": {d: "usable" if why is None else f"unusable: {why}"
                           for d, why in drivers.items()},
        "Runtime": shutil.which("runc") or "runc (not found)",
        "NetworkHelper": helper,
        "Images": len(Store(root).images()),
        "Containers": sum(1 for _ in Containers(root).all()),
    }
    if format == "json":
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
