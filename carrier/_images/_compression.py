"""Compressed streams told apart by their magic bytes (gzip, bzip2, xz), for layers and archives.

zstd is recognised only to be refused with a clear error rather than a confusing "not a tar".
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import zlib
from collections.abc import Iterator
from typing import IO, cast

from .._util._errors import CarrierError

#: What reading a corrupt compressed stream can raise (gzip.BadGzipFile is an OSError).
DECOMPRESS_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)

_ZSTD = b"\x28\xb5\x2f\xfd"


@contextlib.contextmanager
def open_decompressed(f: IO[bytes], label: str) -> Iterator[IO[bytes]]:
    """*f* (seekable, at its start) read through the decompressor its magic bytes call for, or *f*
    itself when it is not compressed. The decompressor is closed on exit, *f* is not."""
    head = f.read(6)
    f.seek(0)
    if head.startswith(b"\x1f\x8b"):
        with gzip.GzipFile(fileobj=f) as g:
            yield cast(IO[bytes], g)
    elif head.startswith(b"BZh"):
        with bz2.BZ2File(f) as b:
            yield b
    elif head.startswith(b"\xfd7zXZ\x00"):
        with lzma.LZMAFile(f) as x:
            yield x
    elif head.startswith(_ZSTD):
        raise CarrierError(f"{label}: zstd compression is not supported (gzip, bzip2 and xz are)")
    else:
        yield f
