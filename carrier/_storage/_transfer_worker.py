"""The container's side of ``carrier cp``: ``python -m carrier._storage._transfer_worker ROOT
(pack|unpack) PATH EXPECT``, started as root of the container's user namespace. It checks that a
ROOT of ``/proc/PID/root`` still has the mount namespace EXPECT (not a PID reused meanwhile),
chroots into ROOT, so PATH (its ``..``, its symlinks, absolute or not) resolves inside the
container's root and never on the host, then packs PATH to stdout or unpacks stdin at PATH.

Failures are one line ``carrier: ...`` on stderr and exit code 125, as the command's own.
"""

from __future__ import annotations

import os
import sys

from .._images._extract import tarfile
from .._util._errors import CarrierError
from ._transfer import pack, unpack


def main(argv: list[str]) -> int:
    """Chroot into the root, then pack or unpack; the exit code."""
    root, action, path, expect = argv
    # Owner names are never looked up inside: NSS would load the container's own libraries
    # into this process. Numeric ids travel in the archive, and the receiver drops them anyway.
    tarfile.pwd = None
    tarfile.grp = None
    try:
        if expect and os.readlink(os.path.join(os.path.dirname(root), "ns", "mnt")) != expect:
            raise CarrierError("the container stopped while the copy began")
        os.chroot(root)
        os.chdir("/")
        if action == "pack":
            pack(path if path.startswith("/") else "/" + path, sys.stdout.buffer)
        else:
            unpack(sys.stdin.buffer, path if path.startswith("/") else "/" + path,
                   untrusted=False)
    except BrokenPipeError:  # the host side stopped reading: it reports why
        return 141
    except CarrierError as e:
        print(f"carrier: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"carrier: {(e.strerror or str(e)).lower()}{where}", file=sys.stderr)
        return 125
    except tarfile.TarError as e:
        print(f"carrier: cannot copy: {e}", file=sys.stderr)
        return 125
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
