"""``carrier pull``: fetch an image from a registry into the store, downloading only the layers
the store lacks, each verified (compressed digest, then diff id) before it is used."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import anyio

from .._util._atomic import lock_fd, try_lock
from .._util._errors import CarrierError
from .._util._fs import remove_tree
from .._util._root import Root
from ._platform import Platform
from ._reference import Reference
from ._registry import LAYER_TYPES, Manifest, Registry, sha256_of
from ._store import Image, Store

PARALLEL_DOWNLOADS = 3
_STALE_NEW = 600.0  # seconds after which a half-created work directory is abandoned


class Progress(Protocol):
    """Receives a pull's per-layer events (digests are ``sha256:<hex>``)."""

    def start(self, digest: str, total: int | None) -> None:
        """A download begins."""

    def advance(self, digest: str, nbytes: int) -> None:
        """*nbytes* more bytes of the blob arrived."""

    def finish(self, digest: str, status: str) -> None:
        """The layer is settled: ``done 1.2 MB``, ``already exists`` or ``failed``."""


def short(digest: str) -> str:
    """The first 12 hex digits of a digest, as Docker shows layers."""
    return digest.partition(":")[2][:12]


def human(nbytes: int) -> str:
    """``1.2 MB`` style sizes (decimal units, as Docker prints them)."""
    size = float(nbytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class LineProgress:
    """One line per event on a stream: ``<digest12>: downloading``, ``<digest12>: done 1.2 MB``."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def start(self, digest: str, total: int | None) -> None:
        """Print that the download began."""
        self._line(digest, "downloading")

    def advance(self, digest: str, nbytes: int) -> None:
        """Nothing: lines are per event, not per chunk."""

    def finish(self, digest: str, status: str) -> None:
        """Print the layer's outcome."""
        self._line(digest, status)

    def _line(self, digest: str, text: str) -> None:
        self.stream.write(f"{short(digest)}: {text}\n")
        self.stream.flush()


class RichProgress:
    """A rich progress bar per layer (for a terminal)."""

    def __init__(self, bars: Any) -> None:
        self.bars = bars
        self.tasks: dict[str, Any] = {}

    def start(self, digest: str, total: int | None) -> None:
        """Add a bar for the blob."""
        self.tasks[digest] = self.bars.add_task(short(digest), total=total)

    def advance(self, digest: str, nbytes: int) -> None:
        """Move the blob's bar."""
        self.bars.advance(self.tasks[digest], nbytes)

    def finish(self, digest: str, status: str) -> None:
        """Label the bar (or a new line) with the outcome."""
        task = self.tasks.get(digest)
        if task is None:
            task = self.tasks[digest] = self.bars.add_task(short(digest), total=1, completed=1)
        self.bars.update(task, description=f"{short(digest)}: {status}")


@contextlib.contextmanager
def console_progress(stream: IO[str] | None = None) -> Iterator[Progress]:
    """Progress for the CLI: rich bars when *stream* (default stderr) is a terminal, else lines."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield LineProgress(stream)
        return
    from rich.console import Console  # imported here: rich costs import time, needed only on a terminal
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    console=Console(file=stream))
    with bars:
        yield RichProgress(bars)


class _Silent:
    """Progress that reports nothing (the library default)."""

    def start(self, digest: str, total: int | None) -> None:
        """Ignore."""

    def advance(self, digest: str, nbytes: int) -> None:
        """Ignore."""

    def finish(self, digest: str, status: str) -> None:
        """Ignore."""


@contextlib.contextmanager
def _workdir(root: Root) -> Iterator[Path]:
    """A private, locked directory under ``root.tmp`` for this pull's partial downloads.

    Directories of pulls that died (their lock is free) are deleted first: a partial download
    is never trusted. The directory is removed when the pull ends, however it ends.
    """
    root.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    for entry in root.tmp.iterdir():
        if entry.name.startswith("pull-"):
            fd = try_lock(entry / ".lock") if entry.is_dir() else None
            if fd is not None:
                try:
                    remove_tree(entry)
                finally:
                    os.close(fd)
        elif entry.name.startswith(".new-pull-"):
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime > _STALE_NEW:
                    remove_tree(entry)
    new = Path(tempfile.mkdtemp(prefix=".new-pull-", dir=root.tmp))
    fd = try_lock(new / ".lock")
    assert fd is not None  # nobody else knows this directory yet
    work = root.tmp / new.name.removeprefix(".new-")
    try:
        os.rename(new, work)
        yield work
    finally:
        remove_tree(work)
        remove_tree(new)
        os.close(fd)


def _diff_ids(config: bytes, manifest: Manifest, label: str) -> list[str]:
    try:
        diff_ids = [str(d) for d in json.loads(config)["rootfs"]["diff_ids"]]
    except (ValueError, KeyError, TypeError):
        raise CarrierError(f"pull {label}: the image config has no rootfs.diff_ids") from None
    if len(diff_ids) != len(manifest.layers):
        raise CarrierError(f"pull {label}: the manifest has {len(manifest.layers)} layers but the "
                           f"config names {len(diff_ids)}")
    return diff_ids


def _check_platform(config: bytes, want: Platform | None, label: str) -> None:
    if want is None:
        return
    try:
        doc = json.loads(config)
        got = Platform(str(doc["os"]), str(doc["architecture"]), doc.get("variant"))
    except (ValueError, KeyError, TypeError):
        raise CarrierError(f"pull {label}: the image config names no os and architecture") from None
    if (got.os, got.architecture) != (want.os, want.architecture):
        raise CarrierError(f"pull {label}: the image is for {got}, not the requested {want}")


def _check_media_types(manifest: Manifest, label: str) -> None:
    for layer in manifest.layers:
        media = str(layer.get("mediaType", ""))
        if media not in LAYER_TYPES:
            why = " (zstd is not supported; gzip and plain tar are)" if "zstd" in media else ""
            raise CarrierError(f"pull {label}: unsupported layer media type {media or '(none)'}{why}")


async def _config(reg: Registry, store: Store, manifest: Manifest) -> bytes:
    """The image config: from the store if it is there (and intact), else downloaded and verified."""
    digest = str(manifest.config["digest"])
    if store.has_blob(digest):
        data = store.blob_path(digest).read_bytes()
        if sha256_of(data) == digest:
            return data
    return await reg.blob_bytes(manifest.config)


async def pull(root: Root, ref: str, *, platform: str | None = None, tls_verify: bool | None = None,
               progress: Progress | None = None) -> Image:
    """Pull image *ref* from its registry into the store under *root* and tag it *ref*.

    Only layers whose diff id the store lacks are downloaded (at most three at once). Nothing is
    stored unless every blob verifies; on failure, no partial file is left under *root*.
    """
    reference = Reference.parse(ref)
    want = Platform.parse(platform) if platform else None
    store = Store(root)
    events: Progress = progress or _Silent()
    async with _no_prune(root):
        with _workdir(root) as work:
            async with Registry(reference, tls_verify=tls_verify, label=ref) as reg:
                manifest = await reg.image_manifest(want)
                _check_media_types(manifest, ref)
                config = await _config(reg, store, manifest)
                _check_platform(config, want, ref)
                diff_ids = _diff_ids(config, manifest, ref)
                todo: dict[str, dict[str, Any]] = {}
                for desc, diff_id in zip(manifest.layers, diff_ids, strict=True):
                    if store.layers.has(diff_id):
                        events.finish(str(desc["digest"]), "already exists")
                    else:
                        todo.setdefault(diff_id, desc)
                await _fetch_layers(reg, store, work, todo, events)
            return store.add_image(config, [reference])


@contextlib.asynccontextmanager
async def _no_prune(root: Root) -> AsyncIterator[None]:
    """Hold ``gc.lock`` shared (waiting in a worker thread: a prune may hold it a while)."""
    fd = await anyio.to_thread.run_sync(lambda: lock_fd(root.gc_lock, shared=True))
    try:
        yield
    finally:
        os.close(fd)


async def _fetch_layers(reg: Registry, store: Store, work: Path, todo: dict[str, dict[str, Any]],
                        events: Progress) -> None:
    """Download and verify every layer in *todo* (diff id -> descriptor), a few at once, then
    unpack them: if any blob fails, no layer of this pull enters the store."""
    limiter = anyio.CapacityLimiter(PARALLEL_DOWNLOADS)
    blobs = {diff_id: work / f"{n}.blob" for n, diff_id in enumerate(todo)}

    async def download(diff_id: str, desc: dict[str, Any]) -> None:
        digest = str(desc["digest"])
        async with limiter:
            events.start(digest, desc.get("size") if isinstance(desc.get("size"), int) else None)
            try:
                await reg.blob_to_file(desc, blobs[diff_id], lambda n: events.advance(digest, n))
            except BaseException:
                events.finish(digest, "failed")
                raise

    try:
        async with anyio.create_task_group() as tg:
            for diff_id, desc in todo.items():
                tg.start_soon(download, diff_id, desc)
    except BaseExceptionGroup as group:
        first = group.subgroup(lambda e: isinstance(e, CarrierError))
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]  # several layers failed: the first error speaks for all
        if first is not None:
            raise first from None
        raise
    for diff_id, desc in todo.items():
        digest, blob = str(desc["digest"]), blobs[diff_id]
        try:
            size = blob.stat().st_size
            add = functools.partial(store.layers.add, blob, label=digest, expected=diff_id)
            await anyio.to_thread.run_sync(add)
        except BaseException:
            events.finish(digest, "failed")
            raise
        finally:
            blob.unlink(missing_ok=True)
        events.finish(digest, f"done {human(size)}")
