"""Image references follow Docker's grammar and normalisation (distribution/reference)."""

from __future__ import annotations

import pytest

from carrier._images._reference import Reference
from carrier._util._errors import CarrierError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("ns/name", "docker.io", "ns/name", "latest", None),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        ("index.docker.io/library/alpine:1", "docker.io", "library/alpine", "1", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("localhost:5000/a/b/c:v1.0-rc_1", "localhost:5000", "a/b/c", "v1.0-rc_1", None),
        ("127.0.0.1:5000/ns/x:1", "127.0.0.1:5000", "ns/x", "1", None),
        ("quay.io/org/img", "quay.io", "org/img", "latest", None),
        ("Host.Example/x", "Host.Example", "x", "latest", None),
        ("UPPER/x", "UPPER", "x", "latest", None),  # an upper-case first component is a host
        (f"alpine@{DIGEST}", "docker.io", "library/alpine", None, DIGEST),
        (f"host:5000/ns/name:tag@{DIGEST}", "host:5000", "ns/name", "tag", DIGEST),
        ("[::1]:5000/x:2", "[::1]:5000", "x", "2", None),
        ("a__b/c-d--e.f_g", "docker.io", "a__b/c-d--e.f_g", "latest", None),
    ],
)
def test_parse(text: str, domain: str, path: str, tag: str | None, digest: str | None) -> None:
    ref = Reference.parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)


@pytest.mark.parametrize(
    "text",
    [
        "", " alpine", "Alpine", "ns/Name", "alpine:", "alpine:-x", "alpine:" + "t" * 129,
        "alpine@sha256:abc", "alpine@md5:" + "a" * 32, f"alpine@{DIGEST.upper()}", "a//b",
        "a/", "/a", "a..b", "a-/b", "-a", "host:port/x", "host:5000/", ":tag", "a b",
        "x/" + "a" * 260,
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(CarrierError, match="invalid reference format"):
        Reference.parse(text)


def test_uppercase_path_says_lowercase() -> None:
    with pytest.raises(CarrierError, match="must be lowercase"):
        Reference.parse("ns/Name")


@pytest.mark.parametrize(
    ("text", "full", "familiar", "name"),
    [
        ("alpine", "docker.io/library/alpine:latest", "alpine:latest", "docker.io/library/alpine"),
        ("ns/x:1", "docker.io/ns/x:1", "ns/x:1", "docker.io/ns/x"),
        ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest",
         "docker.io/library/a/b"),
        ("127.0.0.1:5000/ns/x:1", "127.0.0.1:5000/ns/x:1", "127.0.0.1:5000/ns/x:1", "127.0.0.1:5000/ns/x"),
        (f"alpine@{DIGEST}", f"docker.io/library/alpine@{DIGEST}", f"alpine@{DIGEST}",
         "docker.io/library/alpine"),
        (f"h.io/x:t@{DIGEST}", f"h.io/x:t@{DIGEST}", f"h.io/x:t@{DIGEST}", "h.io/x"),
    ],
)
def test_forms(text: str, full: str, familiar: str, name: str) -> None:
    ref = Reference.parse(text)
    assert (str(ref), ref.familiar, ref.name) == (full, familiar, name)
    assert Reference.parse(str(ref)) == ref  # the full form parses back to the same reference
    assert Reference.parse(ref.familiar) == ref


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("localhost/x", True), ("localhost:5000/x", True), ("127.0.0.1:5000/x", True),
        ("127.8.9.10/x", True), ("[::1]:5000/x", True), ("[::1]/x", True),
        ("alpine", False), ("10.0.0.1:5000/x", False), ("localhost.example.com/x", False),
        ("128.0.0.1/x", False),
    ],
)
def test_loopback(text: str, loopback: bool) -> None:
    assert Reference.parse(text).is_loopback is loopback


def test_registry_url() -> None:
    assert Reference.parse("alpine").registry_url == "https://registry-1.docker.io"
    assert Reference.parse("127.0.0.1:5000/x").registry_url == "https://127.0.0.1:5000"
    assert Reference.parse("[::1]:5000/x").registry_url == "https://[::1]:5000"
