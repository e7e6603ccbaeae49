"""Registry credentials: read from the files Podman and Docker use, written by ``carrier login``,
so a login made with either tool works here and the other way round."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from .._util._atomic import write_json
from .._util._errors import CarrierError

_DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")


def auth_files() -> list[Path]:
    """Where credentials are looked up, first match wins: ``$REGISTRY_AUTH_FILE``,
    ``$XDG_RUNTIME_DIR/containers/auth.json``, ``~/.docker/config.json``."""
    files = []
    if env := os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env))
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(xdg) / "containers" / "auth.json")
    files.append(Path.home() / ".docker" / "config.json")
    return files


def login_file() -> Path:
    """Where ``login`` writes: ``$REGISTRY_AUTH_FILE`` if set, else the XDG runtime auth.json
    if ``$XDG_RUNTIME_DIR`` is set, else ``~/.docker/config.json``."""
    if env := os.environ.get("REGISTRY_AUTH_FILE"):
        return Path(env)
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "containers" / "auth.json"
    return Path.home() / ".docker" / "config.json"


def _host_of(key: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``: auth files key entries in several forms."""
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0]


def _keys_for(domain: str) -> set[str]:
    return {_host_of(k) for k in _DOCKER_HUB_KEYS} if domain == "docker.io" else {domain}


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CarrierError(f"cannot read the credentials file {path}: {e}") from None
    if not isinstance(data, dict):
        raise CarrierError(f"cannot read the credentials file {path}: not a JSON object")
    return data


def credentials(domain: str) -> tuple[str, str] | None:
    """The ``(user, password)`` stored for registry *domain*, or None for anonymous access."""
    wanted = _keys_for(domain)
    for path in auth_files():
        auths = _read(path).get("auths") or {}
        if not isinstance(auths, dict):
            raise CarrierError(f"cannot read the credentials file {path}: 'auths' is not an object")
        for key, entry in auths.items():
            if _host_of(key) not in wanted or not isinstance(entry, dict) or not entry.get("auth"):
                continue
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, TypeError):
                raise CarrierError(f"bad 'auth' entry for {key} in {path}: "
                                   "expected base64 of user:password") from None
            if sep:
                return user, password
    return None


def login(domain: str, user: str, password: str) -> Path:
    """Store credentials for *domain* atomically (mode 0600), keeping every other entry; returns the file."""
    path = login_file()
    data = _read(path)
    auths = data.setdefault("auths", {})
    for key in list(auths):
        if _host_of(key) in _keys_for(domain):
            del auths[key]
    key = "https://index.docker.io/v1/" if domain == "docker.io" and path.name == "config.json" else domain
    auths[key] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_json(path, data)
    return path


def logout(domain: str) -> bool:
    """Remove the credentials for *domain* from the login file; False if there were none."""
    path = login_file()
    data = _read(path)
    auths = data.get("auths") or {}
    found = [k for k in auths if _host_of(k) in _keys_for(domain)]
    for key in found:
        del auths[key]
    if found:
        with contextlib.suppress(FileNotFoundError):
            write_json(path, data)
    return bool(found)
