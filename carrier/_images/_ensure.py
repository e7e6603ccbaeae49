"""The pull policy: make sure an image is stored before a container is created from it.

``missing`` (Docker's default) pulls only what the store lacks, ``always`` pulls every time,
``never`` refuses a missing image. The registry client (and httpx) is imported only when a pull
actually happens, so running a stored image costs nothing extra.
"""

from __future__ import annotations

import sys

from .._util._errors import CarrierError, ImageNotFoundError, NotFoundError, PullError
from .._util._root import Root
from ._store import Image, Store

POLICIES = ("missing", "always", "never")


def _needs_pull(root: Root, ref: str, policy: str) -> bool:
    if policy not in POLICIES:
        raise CarrierError(f"invalid --pull {policy!r}: choose missing, always or never")
    if policy == "always":
        return True
    try:
        Store(root).get(ref)
        return False
    except NotFoundError:
        if policy == "never":
            raise ImageNotFoundError(f"no such image: {ref} (and --pull never)") from None
        return True


async def pull_showing_progress(root: Root, ref: str, platform: str | None = None,
                                tls_verify: bool | None = None) -> Image:
    """Pull *ref*, with progress on stderr (bars on a terminal, lines otherwise).

    **Cancellation:** an interrupted pull stores nothing (``_pull``).
    """
    from ._pull import console_progress, pull

    with console_progress(sys.stderr) as progress:
        try:
            return await pull(root, ref, platform=platform, tls_verify=tls_verify, progress=progress)
        except (NotFoundError, PullError):
            raise
        except CarrierError as e:  # one class for "the pull failed", whatever the cause
            raise PullError(str(e)) from e


async def ensure_image(root: Root, ref: str, policy: str = "missing", platform: str | None = None) -> None:
    """Pull *ref* as *policy* says, with progress on stderr.

    **Cancellation:** an interrupted pull stores nothing (``_pull``).
    """
    if _needs_pull(root, ref, policy):
        await pull_showing_progress(root, ref, platform)


def ensure_image_sync(root: Root, ref: str, policy: str = "missing", platform: str | None = None) -> None:
    """:func:`ensure_image` from synchronous code (the CLI)."""
    if _needs_pull(root, ref, policy):
        import anyio

        anyio.run(lambda: pull_showing_progress(root, ref, platform))
