"""The pieces safe unpacking needs: a ``tarfile`` with extraction filters (the maintained
backport on Debian 12's Python 3.11.2) and the error for refused entries."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 12):
    import tarfile
else:  # Debian 12's Python 3.11.2 predates the extraction filters; use the maintained backport
    import backports.tarfile as tarfile

from .._util._errors import CarrierError

__all__ = ["UnsafeArchiveError", "tarfile"]


class UnsafeArchiveError(CarrierError):
    """An archive entry would write outside its target, or is otherwise refused."""


