"""Image references (``[host[:port]/]path[:tag][@sha256:...]``), parsed and normalised by Docker's
rules (the grammar of distribution/reference), so names mean the same here as in Docker."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .._util._errors import CarrierError

DOCKER_DOMAIN = "docker.io"
_LEGACY_DOMAINS = {"index.docker.io", "registry-1.docker.io"}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_NAME_MAX = 255


def is_loopback_host(host: str) -> bool:
    """Whether *host* (a name, an address, or ``[v6]``) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _invalid(text: str, why: str) -> CarrierError:
    return CarrierError(f"invalid reference format: {text!r}: {why}")


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's splitDockerDomain: the first component is a host only if it looks like one."""
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, path = DOCKER_DOMAIN, name
    else:
        domain, path = first, rest
    if domain in _LEGACY_DOMAINS:
        domain = DOCKER_DOMAIN
    if domain == DOCKER_DOMAIN and "/" not in path:
        path = f"library/{path}"
    return domain, path


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: registry domain, repository path, optional tag and digest."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse and normalise *text*; ``latest`` is the tag only when neither tag nor digest is given."""
        if not text or text != text.strip():
            raise _invalid(text, "empty or surrounded by spaces")
        remainder, at, digest = text.partition("@")
        if at and not _DIGEST_RE.match(digest):
            raise _invalid(text, "the digest must be sha256: and 64 lower-case hex digits")
        tag: str | None = None
        slash = remainder.rfind("/")
        colon = remainder.rfind(":")
        if colon > slash:
            remainder, tag = remainder[:colon], remainder[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise _invalid(text, "a tag is up to 128 letters, digits, '_', '.' and '-'")
        if not remainder:
            raise _invalid(text, "no repository name")
        domain, path = _split_domain(remainder)
        if not _DOMAIN_RE.match(domain):
            raise _invalid(text, f"bad registry host {domain!r}")
        if path != path.lower() and _PATH_RE.match(path.lower()):
            raise _invalid(text, "repository name must be lowercase")
        if not _PATH_RE.match(path):
            raise _invalid(text, "a repository name is lower-case letters, digits and separators")
        if len(f"{domain}/{path}") > _NAME_MAX:
            raise _invalid(text, f"repository name longer than {_NAME_MAX} characters")
        if tag is None and not at:
            tag = "latest"
        return cls(domain, path, tag, digest if at else None)

    @property
    def name(self) -> str:
        """The fully qualified repository name, e.g. ``docker.io/library/alpine``."""
        return f"{self.domain}/{self.path}"

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        """The full reference, e.g. ``docker.io/library/alpine:latest``."""
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """The short form Docker shows: ``alpine:latest``, ``ns/x:1``, ``127.0.0.1:5000/ns/x:1``."""
        if self.domain != DOCKER_DOMAIN:
            return str(self)
        path = self.path
        if path.startswith("library/") and path.count("/") == 1:
            path = path.removeprefix("library/")
        return path + self._suffix()

    @property
    def host(self) -> str:
        """The registry host without its port (IPv6 without brackets)."""
        if self.domain.startswith("["):
            return self.domain[1 : self.domain.index("]")]
        return self.domain.rsplit(":", 1)[0] if ":" in self.domain else self.domain

    @property
    def is_loopback(self) -> bool:
        """Whether the registry is on this machine's loopback (localhost, 127.0.0.0/8, ::1)."""
        return is_loopback_host(self.host)

    @property
    def registry_url(self) -> str:
        """The registry's base URL: Docker Hub's API endpoint for docker.io, else https://DOMAIN."""
        return "https://registry-1.docker.io" if self.domain == DOCKER_DOMAIN else f"https://{self.domain}"
