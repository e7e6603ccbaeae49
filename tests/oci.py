"""A test-image builder: writes an OCI image layout (stdlib only) with two gzip layers that
exercise whiteouts and opaque directories, single- or multi-platform."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
HELLO = "hello from layer 2\n"
MTIME = 1_700_000_000


def sha256(data: bytes) -> str:
    """``sha256:<hex>`` of *data*."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Tar:
    """Builds a deterministic tar in memory (root-owned entries, fixed mtime, in call order)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def _info(self, name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def dir(self, name: str, mode: int = 0o755) -> None:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name: str, target: str) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def close(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def layer1_tar() -> bytes:
    """The base layer: a busybox rootfs (as tests/conftest.py builds it) plus etc/removed and opq/old."""
    t = _Tar()
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "opq"):
        t.dir(d, 0o1777 if d == "tmp" else 0o755)
    t.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for applet in sorted(set(applets.stdout.split()) - {"busybox"}):
        t.symlink(f"bin/{applet}", "busybox")
    t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    t.file("etc/group", b"root:x:0:\nnobody:x:65534:\n")
    t.file("etc/removed", b"this file is deleted by layer 2\n")
    t.file("opq/old", b"hidden by layer 2's opaque marker\n")
    return t.close()


def layer2_tar() -> bytes:
    """The top layer: hello.txt, a whiteout of etc/removed, an opaque opq/ with opq/new."""
    t = _Tar()
    t.file("hello.txt", HELLO.encode())
    t.dir("etc")
    t.file("etc/.wh.removed", b"")
    t.dir("opq")
    t.file("opq/.wh..wh..opq", b"")
    t.file("opq/new", b"new\n")
    return t.close()


def _split_platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def build_layout(
    dest: Path, *, tag: str = "latest", platforms: tuple[str, ...] = ("linux/amd64",),
    gzip_layers: bool = True,
) -> dict[str, Any]:
    """Write an OCI image layout at *dest*; with several *platforms*, the tag names an image index.

    Returns ``{"manifest", "config"`` (the first platform's), ``"manifests", "configs"`` (by
    platform), ``"index"`` (the multi-arch index digest or None), ``"layers"`` (compressed
    digests, base first), ``"diff_ids"``, ``"layer_sizes"``, ``"platforms"``, ``"tag"``}.
    """
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        return digest

    tars = [layer1_tar(), layer2_tar()]
    diff_ids = [sha256(t) for t in tars]
    packed = [gzip.compress(t, mtime=0) if gzip_layers else t for t in tars]
    layer_descs = [
        {"mediaType": OCI_LAYER_GZIP if gzip_layers else OCI_LAYER_TAR, "digest": put(p), "size": len(p)}
        for p in packed
    ]
    manifests: dict[str, str] = {}
    configs: dict[str, str] = {}
    descs: list[dict[str, Any]] = []
    for platform in platforms:
        plat = _split_platform(platform)
        env = ["PATH=/bin", "FROM_IMAGE=yes"]
        if len(platforms) > 1:
            env.append(f"ARCH={plat['architecture']}")
        config = {
            "created": "2024-01-01T00:00:00Z",
            **plat,
            "config": {
                "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["cat /hello.txt"], "Env": env,
                "WorkingDir": "/opq", "User": "0",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "tests/oci.py"}] * 2,
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        configs[platform] = put(config_bytes)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": configs[platform], "size": len(config_bytes)},
            "layers": layer_descs,
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifests[platform] = put(manifest_bytes)
        descs.append({"mediaType": OCI_MANIFEST, "digest": manifests[platform], "size": len(manifest_bytes),
                      "platform": plat})
    index_digest: str | None = None
    if len(platforms) > 1:
        nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}, sort_keys=True)
        index_digest = put(nested.encode())
        top = {"mediaType": OCI_INDEX, "digest": index_digest, "size": len(nested)}
    else:
        top = {k: v for k, v in descs[0].items() if k != "platform"}
    top["annotations"] = {REF_NAME: tag}
    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [top]}
    (dest / "index.json").write_text(json.dumps(index))
    return {
        "manifest": manifests[platforms[0]], "config": configs[platforms[0]], "manifests": manifests,
        "configs": configs, "index": index_digest, "layers": [d["digest"] for d in layer_descs],
        "diff_ids": diff_ids, "layer_sizes": [len(p) for p in packed], "platforms": list(platforms),
        "tag": tag,
    }
