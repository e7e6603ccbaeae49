"""The merged tree of image layers without a mount: the ``copy`` driver (the layers applied in
order into one directory) and reading one path as the merged tree would show it."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from pathlib import Path

import anyio

from .._images._layers import OPAQUE_XATTR
from .._util import _process
from .._util._errors import CarrierError
from .._util._fs import remove_tree


def top_entry(layers: tuple[Path, ...], rel: str) -> Path | None:
    """The path *rel* as the merged tree shows it: the top-most layer's entry, or None where
    it is absent, deleted (a whiteout) or hidden by an opaque directory or a non-directory
    higher up. A path through a symlink counts as absent (the merged tree would follow it)."""
    parts = rel.split("/")
    for layer in reversed(layers):
        path, hidden = layer, False
        for i, part in enumerate(parts):
            path = path / part
            if not os.path.lexists(path):
                break
            st = os.lstat(path)
            if i == len(parts) - 1:
                return None if _is_whiteout(st) else path
            if not stat.S_ISDIR(st.st_mode):  # a whiteout, file or symlink hides what is below
                return None
            hidden = hidden or _opaque(str(path))
        if hidden:
            return None
    return None


def copy_up(layers: tuple[Path, ...], upper: Path, rel: str) -> None:
    """Copy the regular file *rel* of the merged tree into *upper*, as overlay would on write."""
    target = upper / rel
    if os.path.lexists(target) or any(p.is_symlink() for p in target.parents if upper in p.parents):
        return
    source = top_entry(layers, rel)
    if source is not None and stat.S_ISREG(os.lstat(source).st_mode):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


async def copy_layers(layers: tuple[Path, ...], dest: Path) -> None:
    """Apply the layers in order into a new directory *dest* (the ``copy`` driver).

    ``cp -a`` (reflinks where the filesystem has them) is an order of magnitude faster than
    ``shutil.copytree`` on many small files. Each later layer first removes what it deletes
    (whiteouts), empties its opaque directories, and clears every path it replaces (all but
    directories it merges into), so that ``cp`` never writes through a lower layer's symlink.
    """
    staging = dest.with_name(f".{dest.name}.copy")
    remove_tree(staging)
    try:
        for i, layer in enumerate(layers):
            if i > 0:
                await anyio.to_thread.run_sync(_clear_for, layer, staging)
            source = str(layer) if i == 0 else f"{layer}/."  # the first one creates the tree
            try:
                await _process.run(["cp", "-a", "--reflink=auto", source, str(staging)])
            except RuntimeError as e:
                raise CarrierError(f"cannot create the container's root filesystem: {e}") from None
            await anyio.to_thread.run_sync(_drop_whiteouts, staging)
        os.rename(staging, dest)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(remove_tree, staging)
        raise


def _is_whiteout(st: os.stat_result) -> bool:
    return (st.st_mode & 0o170000) == 0o020000 and st.st_rdev == 0


def _clear_for(layer: Path, tree: Path) -> None:
    """Make room in *tree* for *layer*: deletions, opaque directories and type changes."""
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = os.path.relpath(dirpath, layer)
        here = tree / rel if rel != "." else tree
        if rel != "." and _opaque(dirpath) and here.is_dir() and not here.is_symlink():
            remove_tree(here)
        for name in dirnames + filenames:
            src = os.path.join(dirpath, name)
            dst = here / name
            if not os.path.lexists(dst):
                continue
            src_is_dir = os.path.isdir(src) and not os.path.islink(src)
            dst_is_dir = dst.is_dir() and not dst.is_symlink()
            # Only two real directories merge; anything else is replaced, so that cp never
            # writes through a lower layer's symlink (etc/passwd -> /home/user/file).
            if _is_whiteout(os.lstat(src)) or not (src_is_dir and dst_is_dir):
                remove_tree(dst) if dst_is_dir else dst.unlink()


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _drop_whiteouts(tree: Path) -> None:
    """Remove whiteout devices and opaque markers that the copy brought along."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if _is_whiteout(os.lstat(path)):
                os.unlink(path)
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.removexattr(os.path.join(dirpath, name), OPAQUE_XATTR, follow_symlinks=False)
