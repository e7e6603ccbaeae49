"""An async client for the OCI distribution API (Docker registry v2) on httpx: auth, manifests,
platform choice and verified blob downloads. Runs on asyncio and trio (httpx uses anyio)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .._util._errors import CarrierError, ImageNotFoundError
from ._auth import credentials
from ._platform import Platform
from ._reference import Reference, is_loopback_host

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
LAYER_TYPES = frozenset({
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
})
MANIFEST_MAX = 4 << 20
CONFIG_MAX = 16 << 20
_CHUNK = 1 << 16
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_CHALLENGE_RE = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True)
class Manifest:
    """An image manifest: its digest, config descriptor and layer descriptors (base first)."""

    digest: str
    raw: bytes
    config: dict[str, Any]
    layers: tuple[dict[str, Any], ...]


def _list(doc: dict[str, Any], key: str) -> list[Any]:
    """``doc[key]`` as a list (absent: empty); anything else is a malformed manifest."""
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise CarrierError(f"malformed manifest: {key!r} is not a list")
    return value


def sha256_of(data: bytes) -> str:
    """``sha256:<hex>`` of *data*."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(desc: Any, what: str) -> dict[str, Any]:
    if not isinstance(desc, dict) or not _DIGEST_RE.match(str(desc.get("digest", ""))):
        raise CarrierError(f"the registry sent a {what} without a valid sha256 digest")
    return desc


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split ``Bearer realm="...",service="..."`` into the scheme and its parameters."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {m[0].lower(): m[1] or m[2] for m in _CHALLENGE_RE.findall(rest)}


def _error_text(resp: httpx.Response) -> str:
    """The registry's own error message (distribution's ``{"errors": [...]}``), if any."""
    try:
        errors = resp.json().get("errors") or []
        return "; ".join(str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict))
    except (ValueError, AttributeError):
        return ""


class Sink:
    """A temporary file that hashes what is written to it (sync, so it can be used from async code)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hash = hashlib.sha256()
        self.size = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)

    def write(self, data: bytes) -> None:
        self.hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Close and delete the file (it holds unverified bytes)."""
        self.close()
        self.path.unlink(missing_ok=True)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class Registry:
    """A session with one registry for one repository: ``async with Registry(ref) as reg: ...``.

    TLS is verified by default. Unverified TLS, then plain http, are tried only when *tls_verify*
    is False, or when it is None and the registry is on loopback.
    """

    def __init__(self, ref: Reference, *, tls_verify: bool | None = None, label: str | None = None,
                 auth: tuple[str, str] | None = None, action: str = "pull") -> None:
        self.ref = ref
        self.label = f"{action} {label or ref.familiar}"
        self.insecure = tls_verify is False or (tls_verify is None and ref.is_loopback)
        self.creds = auth if auth is not None else credentials(ref.domain)
        self.base = ref.registry_url
        self.blob_gets = 0
        self._auth_header: str | None = None
        self._client = httpx.AsyncClient(
            verify=not self.insecure, follow_redirects=True, timeout=httpx.Timeout(60.0, connect=15.0),
            headers={"User-Agent": "carrier"}, event_hooks={"request": [self._only_trusted_hosts]},
        )

    def _trusted_insecure(self, url: httpx.URL) -> bool:
        """Whether *url* may be used without TLS verification: the registry the user named as
        insecure (or a loopback one) itself, or any loopback address."""
        return url.host == self.ref.host or is_loopback_host(url.host)

    async def _only_trusted_hosts(self, request: httpx.Request) -> None:
        """The insecure session never talks to another host (a redirect, a token realm) without
        verification: that host was not the one the user allowed."""
        if self.insecure and not self._trusted_insecure(request.url):
            raise self._fail(f"refusing an unverified connection to {request.url.host} (only "
                             f"{self.ref.domain} was allowed without TLS verification)")

    async def __aenter__(self) -> Registry:
        try:
            await self.ping()
        except BaseException:
            await self._client.aclose()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._client.aclose()

    def _fail(self, what: str) -> CarrierError:
        return CarrierError(f"{self.label}: {what}")

    def _auth_failed(self, resp: httpx.Response) -> CarrierError:
        login = f"carrier login {self.ref.domain}"
        if self.creds is None:
            return self._fail(f"authentication required ({resp.status_code}): log in first ({login})")
        return self._fail(f"authentication failed ({resp.status_code}): check credentials ({login})")

    async def _send(self, method: str, url: str, *, stream: bool = False,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        """One request with our credentials; connection problems become one-line errors."""
        hdrs = dict(headers or {})
        if self._auth_header:
            hdrs["Authorization"] = self._auth_header
        try:
            request = self._client.build_request(method, url, headers=hdrs)
            return await self._client.send(request, stream=stream)
        except httpx.TimeoutException:
            raise self._fail(f"registry {self.ref.domain} timed out") from None
        except httpx.HTTPError as e:
            raise self._fail(f"cannot reach registry {self.ref.domain}: {e or type(e).__name__}") from None

    async def ping(self) -> None:
        """``GET /v2/``: choose https or (if allowed) http, and authenticate if asked to."""
        try:
            resp = await self._send("GET", f"{self.base}/v2/")
        except CarrierError:
            if not self.insecure:
                raise
            self.base = "http://" + self.base.split("://", 1)[1]
            resp = await self._send("GET", f"{self.base}/v2/")
        if resp.status_code == 401:
            await self._authenticate(resp)
            resp = await self._send("GET", f"{self.base}/v2/")
            if resp.status_code == 401:
                raise self._auth_failed(resp)
        if resp.status_code != 200:
            raise self._fail(f"registry {self.ref.domain} answered /v2/ with HTTP {resp.status_code}")

    async def _authenticate(self, resp: httpx.Response) -> None:
        """Answer a 401 challenge: Basic with stored credentials, or a Bearer token from the realm."""
        scheme, params = _challenge(resp.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if self.creds is None:
                raise self._auth_failed(resp)
            token = base64.b64encode(":".join(self.creds).encode()).decode()
            self._auth_header = f"Basic {token}"
        elif scheme == "bearer" and params.get("realm"):
            query = {"scope": f"repository:{self.ref.path}:pull"}
            if params.get("service"):
                query["service"] = params["service"]
            auth = httpx.BasicAuth(*self.creds) if self.creds else None
            try:
                realm = httpx.URL(params["realm"])
            except httpx.InvalidURL:
                raise self._fail(f"invalid token server address {params['realm']!r}") from None
            if realm.scheme != "https" and not (self.insecure and self._trusted_insecure(realm)):
                raise self._fail(f"refusing to ask a plain-http token server ({realm.host}) "
                                 "for a token")
            try:
                if self.insecure and not self._trusted_insecure(realm):
                    async with httpx.AsyncClient(timeout=self._client.timeout) as verified:
                        tok = await verified.get(realm, params=query, auth=auth)
                else:
                    tok = await self._client.get(realm, params=query, auth=auth)
            except httpx.HTTPError as e:
                raise self._fail(f"cannot reach the token server {params['realm']}: {e}") from None
            if tok.status_code in (401, 403):
                raise self._auth_failed(tok)
            try:
                body = tok.json()
                token = body.get("token") or body.get("access_token")
            except (ValueError, AttributeError):
                token = None
            if tok.status_code != 200 or not isinstance(token, str) or not token:
                raise self._fail(f"the token server {params['realm']} gave no token (HTTP {tok.status_code})")
            self._auth_header = f"Bearer {token}"
        else:
            raise self._fail(f"unsupported authentication challenge {scheme or '(none)'!r}")

    async def _get(self, url: str, *, stream: bool = False,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        resp = await self._send("GET", url, stream=stream, headers=headers)
        if resp.status_code == 401:
            await resp.aclose()
            raise self._auth_failed(resp)
        if resp.status_code == 403:
            await resp.aclose()
            raise self._fail(f"access denied (403) to {self.ref.name}")
        return resp

    async def manifest(self, reference: str) -> tuple[bytes, str]:
        """Fetch a manifest or index by tag or digest; verify it against *reference* if a digest.
        Returns the raw bytes and the media type."""
        accept = ", ".join((*INDEX_TYPES, *MANIFEST_TYPES))
        url = f"{self.base}/v2/{self.ref.path}/manifests/{reference}"
        resp = await self._get(url, stream=True, headers={"Accept": accept})
        try:
            if resp.status_code == 404:
                await resp.aread()
                detail = _error_text(resp)
                raise ImageNotFoundError(f"{self.label}: manifest unknown: {self.ref.name}:{reference} not "
                                         f"found in registry {self.ref.domain}"
                                         + (f" ({detail})" if detail else ""))
            if resp.status_code != 200:
                raise self._fail(f"manifest {reference}: HTTP {resp.status_code}")
            data = bytearray()
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > MANIFEST_MAX:
                    raise self._fail(f"manifest {reference} is larger than {MANIFEST_MAX} bytes")
        finally:
            await resp.aclose()
        raw = bytes(data)
        if reference.startswith("sha256:") and sha256_of(raw) != reference:
            raise self._fail(f"manifest digest mismatch: expected {reference}, got {sha256_of(raw)}")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise self._fail(f"manifest {reference} is not JSON") from None
        if not isinstance(doc, dict):
            raise self._fail(f"manifest {reference} is not a JSON object")
        media = str(doc.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0].strip())
        if media not in (*INDEX_TYPES, *MANIFEST_TYPES):
            media = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "layers" in doc else media
        if media not in (*INDEX_TYPES, *MANIFEST_TYPES):
            raise self._fail(f"unsupported manifest type {media or '(none)'} "
                             "(schema 1 images are not supported)")
        return raw, media

    async def image_manifest(self, platform: Platform | None = None) -> Manifest:
        """The image manifest for the reference, choosing *platform* (default: the host's) from an index."""
        reference = self.ref.digest or self.ref.tag or "latest"
        raw, media = await self.manifest(reference)
        if media in INDEX_TYPES:
            want = platform or Platform.host()
            entries = [_descriptor(m, "manifest list entry") for m in _list(json.loads(raw), "manifests")]
            chosen = [m for m in entries if want.matches(Platform.of(m))]
            if not chosen:
                available = sorted({str(p) for m in entries if (p := Platform.of(m))})
                raise self._fail(f"no image for platform {want} in {self.ref.familiar}; "
                                 f"available: {', '.join(available) or 'none'} (choose with --platform)")
            reference = chosen[0]["digest"]
            raw, media = await self.manifest(reference)
            if media in INDEX_TYPES:
                raise self._fail(f"nested image index {reference} is not supported")
        doc = json.loads(raw)
        config = _descriptor(doc.get("config"), "config descriptor")
        layers = tuple(_descriptor(layer, "layer descriptor") for layer in _list(doc, "layers"))
        digest = reference if reference.startswith("sha256:") else sha256_of(raw)
        return Manifest(digest, raw, config, layers)

    async def blob_bytes(self, desc: dict[str, Any], limit: int = CONFIG_MAX) -> bytes:
        """Fetch a small blob (an image config) into memory and verify its digest."""
        digest = str(desc["digest"])
        resp = await self._blob_response(digest)
        data = bytearray()
        try:
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    raise self._fail(f"blob {digest} is larger than {limit} bytes")
        except httpx.HTTPError as e:
            raise self._fail(f"download of {digest} failed: {e or type(e).__name__}") from None
        finally:
            await resp.aclose()
        actual = sha256_of(bytes(data))
        if actual != digest:
            raise self._fail(f"digest mismatch for blob {digest}: got {actual}")
        return bytes(data)

    async def _blob_response(self, digest: str) -> httpx.Response:
        self.blob_gets += 1
        resp = await self._get(f"{self.base}/v2/{self.ref.path}/blobs/{digest}", stream=True)
        if resp.status_code != 200:
            await resp.aclose()
            what = "blob unknown" if resp.status_code == 404 else f"HTTP {resp.status_code}"
            raise self._fail(f"blob {digest}: {what}")
        return resp

    async def blob_to_file(self, desc: dict[str, Any], dest: Path,
                           on_bytes: Callable[[int], None] | None = None) -> None:
        """Stream a blob into the new file *dest*, verifying size and digest; on any failure
        *dest* is removed, so an unverified blob is never left behind."""
        digest = str(desc["digest"])
        size = desc.get("size") if isinstance(desc.get("size"), int) else None
        sink = Sink(dest)
        try:
            resp = await self._blob_response(digest)
            try:
                async for chunk in resp.aiter_bytes(_CHUNK):
                    sink.write(chunk)
                    if size is not None and sink.size > size:
                        raise self._fail(f"blob {digest} is larger than the {size} bytes its manifest says")
                    if on_bytes:
                        on_bytes(len(chunk))
            except httpx.HTTPError as e:
                raise self._fail(f"download of {digest} failed: {e or type(e).__name__}") from None
            finally:
                await resp.aclose()
            sink.close()
            if sink.digest != digest:
                raise self._fail(f"digest mismatch for blob: expected {digest}, got {sink.digest}")
            if size is not None and sink.size != size:
                raise self._fail(f"blob {digest} is {sink.size} bytes, its manifest says {size}")
        except BaseException:
            sink.discard()
            raise


async def check_login(domain: str, user: str, password: str, *, tls_verify: bool | None = None) -> None:
    """Prove that *user*/*password* are accepted by the registry at *domain* (for ``carrier login``)."""
    ref = Reference.parse(f"{domain}/carrier-login-check")
    async with Registry(ref, tls_verify=tls_verify, label=domain, auth=(user, password), action="login"):
        pass
