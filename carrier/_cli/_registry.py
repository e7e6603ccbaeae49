"""The registry commands: ``pull``, ``login`` and ``logout``, on top of the registry client and
the stored credentials."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

from cyclopts import Parameter

from .._util._errors import CarrierError
from .._util._root import Root

TlsVerify = Annotated[bool | None, Parameter(negative="--no-tls-verify")]


def pull(reference: str, *, platform: str | None = None, tls_verify: TlsVerify = None) -> int:
    """Pull an image from a registry (``alpine`` is docker.io/library/alpine:latest).

    Prints the image id, as ``podman pull`` does.

    Parameters
    ----------
    reference: str
        [HOST[:PORT]/]NAME[:TAG][@sha256:DIGEST].
    platform: str | None
        os/arch[/variant] to pick from a multi-platform image (default: the host's).
    tls_verify: bool | None
        Require HTTPS with a verified certificate (default: yes, except for registries on
        loopback). --tls-verify=false allows plain HTTP or unverified TLS for this registry.
    """
    import anyio

    from .._images._ensure import pull_showing_progress

    image = anyio.run(lambda: pull_showing_progress(Root.open(), reference, platform, tls_verify))
    print(image.id)
    return 0


def login(
    registry: str,
    *,
    username: Annotated[str | None, Parameter(name=["-u", "--username"])] = None,
    password_stdin: bool = False,
    tls_verify: TlsVerify = None,
) -> int:
    """Log in to a registry: checks the credentials, then stores them (auth.json).

    Parameters
    ----------
    registry: str
        HOST[:PORT].
    username: str | None
        The user name (asked for when missing).
    password_stdin: bool
        Read the password from standard input.
    tls_verify: bool | None
        As for pull.
    """
    import anyio

    from .._images import _auth
    from .._images._reference import Reference
    from .._images._registry import check_login

    domain = Reference.parse(f"{registry}/x").domain
    user = username or input("Username: ")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("Password: ")
    anyio.run(lambda: check_login(domain, user, password, tls_verify=tls_verify))
    path = _auth.login(domain, user, password)
    print(f"Login Succeeded (credentials in {path})")
    return 0


def logout(registry: str) -> int:
    """Forget the stored credentials for a registry."""
    from .._images import _auth
    from .._images._reference import Reference

    domain = Reference.parse(f"{registry}/x").domain
    if not _auth.logout(domain):
        raise CarrierError(f"not logged in to {domain}")
    print(f"Removed login credentials for {domain}")
    return 0
