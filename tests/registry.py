"""Test helpers for registry pulls: a real registry (distribution 2.8) on loopback, skopeo pushes,
htpasswd users, and a fault-injecting HTTP proxy in front of the registry."""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import os
import re
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_BIN = Path("/usr/bin/docker-registry")
HOST = "127.0.0.1"
_BLOB_GET = re.compile(r'"GET /v2/[^ ]*/blobs/(sha256:[0-9a-f]{64}) HTTP/1\.1" 200')
_MANIFEST_GET = re.compile(r'"GET /v2/([^ ]*)/manifests/([^ ]*) HTTP/1\.1" 200')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def accepting(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:*port*."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((HOST, port)) == 0


def wait_accepting(port: int, proc: subprocess.Popen[bytes] | None, log: Path | None,
                   timeout: float = 15) -> None:
    """Wait (bounded) until *port* accepts connections; fail early if *proc* exits."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.02) + 1):
        if accepting(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {log.read_text() if log else ''}")
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise TimeoutError(f"nothing accepts connections on {HOST}:{port} after {timeout}s")


def htpasswd_line(user: str, password: str) -> str:
    """A bcrypt htpasswd entry (libxcrypt's bcrypt through Python's crypt module)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # removed in Python 3.13; present in 3.11 and 3.12

        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed or not hashed.startswith("$2"):
        raise RuntimeError("this libcrypt cannot make bcrypt hashes")
    return f"{user}:{hashed}\n"


@dataclass
class Registry:
    """A running ``docker-registry serve`` on 127.0.0.1 with its own storage."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{HOST}:{self.port}"

    def blob_gets(self) -> list[str]:
        """Digests of every blob served so far (from the registry's access log), in order."""
        return _BLOB_GET.findall(self.log.read_text(errors="replace"))

    def manifest_gets(self) -> list[tuple[str, str]]:
        """(repository, reference) of every manifest served so far, in order."""
        return _MANIFEST_GET.findall(self.log.read_text(errors="replace"))

    def stop(self) -> None:
        """Stop the registry and prove it is gone (process reaped, port closed)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        assert self.proc.returncode is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, 0)
            raise AssertionError(f"registry process {self.proc.pid} still exists")
        assert not accepting(self.port), f"something still listens on {self.host}"


@contextlib.contextmanager
def run_registry(workdir: Path, users: dict[str, str] | None = None) -> Iterator[Registry]:
    """Start a registry on a free loopback port (htpasswd auth if *users*), stop it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if users:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text("".join(htpasswd_line(u, p) for u, p in users.items()))
        auth = f"auth:\n  htpasswd:\n    realm: carrier-test\n    path: {htpasswd}\n"
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'storage'}\n"
        f"http:\n  addr: {HOST}:{port}\n  secret: carrier-test-secret\n{auth}"
    )
    log = workdir / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    reg = Registry(port, workdir, proc, log)
    try:
        wait_accepting(port, proc, log)
        yield reg
    finally:
        reg.stop()


def push(layout: Path, dest: str, *, tag: str = "latest", multi: bool = False,
         creds: tuple[str, str] | None = None, docker_format: bool = False) -> None:
    """Copy the OCI layout's *tag* to ``docker://DEST`` with skopeo (``--all`` for an index;
    *docker_format* converts to Docker schema 2 manifests and manifest lists)."""
    argv = ["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false"]
    if multi:
        argv.append("--all")
    if docker_format:
        argv.append("--format=v2s2")
    if creds:
        argv.append(f"--dest-creds={creds[0]}:{creds[1]}")
    argv += [f"oci:{layout}:{tag}", f"docker://{dest}"]
    env = {**os.environ, "HOME": str(layout.parent), "XDG_RUNTIME_DIR": str(layout.parent)}
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError(f"skopeo copy failed: {res.stderr.strip()}")


@dataclass
class Proxy:
    """An HTTP proxy on 127.0.0.1 in front of a registry that can corrupt or cut responses.

    ``transform(path, body) -> body`` rewrites a whole response body; ``cut`` is a predicate
    on the path: matching responses send half their body and then drop the connection. With
    ``bearer`` set to ``(user, password)``, the proxy demands a token (Docker's token auth) that
    its own ``/token`` endpoint issues for those basic credentials.
    """

    upstream: int
    port: int = 0
    transform: Callable[[str, bytes], bytes] | None = None
    cut: Callable[[str], bool] | None = None
    requests: list[str] = field(default_factory=list)
    bearer: tuple[str, str] | None = None
    token: str = "test-token-0123"
    realm: str | None = None  # the token server the challenge names (default: this proxy's)

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{HOST}:{self.port}"


def _handler(proxy: Proxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.do_GET()

        def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _token_denied(self) -> bool:
            """Token auth: serve /token, and refuse /v2/ requests without the token."""
            assert proxy.bearer is not None
            if self.path.startswith("/token"):
                basic = "Basic " + base64.b64encode(":".join(proxy.bearer).encode()).decode()
                if self.headers.get("Authorization") != basic or "scope=repository" not in self.path:
                    self._reply(401, b'{"details":"bad credentials"}', {"Content-Type": "application/json"})
                else:
                    self._reply(200, json.dumps({"access_token": proxy.token}).encode(),
                                {"Content-Type": "application/json"})
                return True
            if self.headers.get("Authorization") != f"Bearer {proxy.token}":
                realm = f'Bearer realm="{proxy.realm or f"http://{proxy.host}/token"}",service="test-registry"'
                self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                            {"Content-Type": "application/json", "WWW-Authenticate": realm})
                return True
            del self.headers["Authorization"]  # the registry behind is open
            return False

        def do_GET(self) -> None:
            proxy.requests.append(f"{self.command} {self.path}")
            if proxy.bearer and self._token_denied():
                return
            conn = http.client.HTTPConnection(HOST, proxy.upstream, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")}
                conn.request(self.command, self.path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            finally:
                conn.close()
            if proxy.transform and self.command == "GET":
                body = proxy.transform(self.path, body)
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            cut = proxy.cut is not None and self.command == "GET" and proxy.cut(self.path)
            if cut:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def run_proxy(upstream: int) -> Iterator[Proxy]:
    """Run a :class:`Proxy` to the registry on *upstream* in a thread; stop it afterwards."""
    proxy = Proxy(upstream)
    server = http.server.ThreadingHTTPServer((HOST, 0), _handler(proxy))
    server.daemon_threads = True
    proxy.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive(), "proxy thread did not stop"


def blob_path(path: str, digest: str) -> bool:
    """Whether a request path fetches blob *digest*."""
    return path.endswith(f"/blobs/{digest}")
