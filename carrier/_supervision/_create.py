"""Turning an image and a user's overrides into a container spec, Docker's way."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .._images._store import Store
from .._network._options import validate as validate_network
from .._runtime._bundle import init_binary, parse_env, resolve_user
from .._runtime._oci import resolve
from .._runtime._security import check_spec as check_security
from .._state._networks import Networks
from .._state._records import Containers, Record, Spec
from .._storage._choice import choose as choose_storage
from .._storage._copy import top_entry
from .._storage._mounts import parse_mounts
from .._storage._volumes import Volumes
from .._util._atomic import locked
from .._util._durations import check_count, parse_duration
from .._util._errors import CarrierError
from .._util._root import Root
from . import _events
from ._health import HealthConfig
from ._logwriter import log_options
from ._restart import RestartPolicy


def create(root: Root, image: str, command: Sequence[str] = (), *, name: str | None = None,
           **options: Any) -> tuple[Record, int]:
    """Build and check the spec (see :func:`build_spec`), then reserve a new container: its
    record and the fd of its supervisor lock. Nothing is stored unless every check passed."""
    # No rmi or prune between the lookup and the record, no volume rm before the record shows
    # that this container uses the volume.
    uses_volumes = bool(options.get("volumes") or options.get("mounts"))
    with (locked(root.gc_lock, shared=True),
          Volumes(root).lock(shared=True) if uses_volumes else contextlib.nullcontext()):
        spec = build_spec(root, image, command, **options)
        record, lock = Containers(root).create(spec, name)
    _events.emit(root.path, record.id, record.name, "created", image=image)
    return record, lock


def build_spec(
    root: Root,
    image: str,
    command: Sequence[str] = (),
    *,
    entrypoint: Sequence[str] | None = None,
    env: Iterable[str] = (),
    workdir: str | None = None,
    user: str | None = None,
    hostname: str | None = None,
    storage_driver: str | None = None,
    publish_all: bool = False,
    **settings: Any,
) -> Spec:
    """Resolve *image* and build the container's spec, checking every option.

    The command is the image's Entrypoint followed by *command* (or the image's Cmd), as
    Docker does; ``entrypoint`` replaces the image's Entrypoint and drops its Cmd. *settings*
    are further :class:`~carrier._state.Spec` fields (runtime, network, ports, dns, ...).
    *publish_all* (``-P``) publishes each of the image's exposed ports on a free host port.
    """
    img = Store(root).get(image)
    cfg = img.run_config
    entry = list(entrypoint) if entrypoint is not None else list(cfg.get("Entrypoint") or [])
    cmd = list(command) or ([] if entrypoint is not None else list(cfg.get("Cmd") or []))
    args = entry + cmd
    if not args:
        raise CarrierError(f"no command specified: image {image} has no Cmd or Entrypoint")
    if workdir is not None and not workdir.startswith("/"):
        raise CarrierError(f"invalid working directory {workdir!r}: it must be absolute")
    settings["ports"] = expand_ports(settings.get("ports") or [],
                                     (cfg.get("ExposedPorts") or {}) if publish_all else ())
    settings.setdefault("resolv_conf", os.environ.get("CARRIER_RESOLV_CONF", "/etc/resolv.conf"))
    spec = Spec(
        image=image,
        image_id=img.id,
        args=args,
        env=parse_env(env, base=cfg.get("Env") or []),
        cwd=workdir or cfg.get("WorkingDir") or "/",
        user=user if user is not None else (cfg.get("User") or "0"),
        hostname=hostname or "",
        storage_driver=choose_storage(root, storage_driver),
        **settings,
    )
    _check_numbers(spec)
    resolve_user(spec.user, *(_image_file(img.layers, f"etc/{db}") for db in ("passwd", "group")))
    resolve(spec.runtime)
    if spec.init:
        init_binary()
    validate_network(spec, Networks(root).names())
    RestartPolicy.parse(spec.restart, delay=spec.restart_delay, max_delay=spec.restart_max_delay,
                        intensity=spec.restart_intensity, period=spec.restart_period)
    HealthConfig.from_spec(spec)
    if spec.remove and spec.restart != "no":
        raise CarrierError("conflicting options: --restart and --rm")
    parse_mounts(spec)
    log_options(spec.log_opt)
    check_security(spec)
    return spec


_NO_HOST_PORT = re.compile(r"(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+)::)?(?P<lo>[0-9]+)"
                           r"(?:-(?P<hi>[0-9]+))?(?:/(?P<proto>tcp|udp))?")


def expand_ports(specs: Iterable[str], exposed: Iterable[str] = ()) -> list[str]:
    """``-p`` values without a host port (``PORT``, ``IP::PORT``, ranges too) as host port 0,
    any free port chosen at start, one per container port; then each *exposed* port of the
    image (``80/tcp``) that no value publishes already, as ``-P`` does."""
    out: list[str] = []
    for spec in specs:
        m = _NO_HOST_PORT.fullmatch(spec.strip())
        if m is None:
            out.append(spec)
            continue
        lo, hi = int(m["lo"]), int(m["hi"] or m["lo"])
        if hi < lo or hi - lo > 65535:
            raise CarrierError(f"invalid port mapping {spec!r}: bad container port range")
        ip = f"{m['ip']}:" if m["ip"] else ""
        proto = f"/{m['proto']}" if m["proto"] else ""
        out += [f"{ip}0:{port}{proto}" for port in range(lo, hi + 1)]
    published = {_container_port(spec) for spec in out}
    for port in exposed:
        number, _, proto = port.partition("/")
        key = (number, proto or "tcp")
        if number.isdigit() and key not in published:
            out.append(f"0:{number}/{key[1]}")
            published.add(key)
    return out


def _container_port(spec: str) -> tuple[str, str]:
    """The container port and protocol of a ``-p`` value with a host port."""
    rest, _, proto = spec.partition("/")
    return rest.rpartition(":")[2], proto or "tcp"


def _check_numbers(spec: Spec) -> None:
    """Every time and count of *spec*, checked and normalised to seconds once, whichever way it
    came (CLI text, a tree file, the library's numbers)."""
    spec.stop_timeout = parse_duration(spec.stop_timeout, "--stop-timeout")
    spec.restart_delay = parse_duration(spec.restart_delay, "--restart-delay")
    spec.restart_max_delay = parse_duration(spec.restart_max_delay, "--restart-max-delay")
    spec.restart_period = parse_duration(spec.restart_period, "--restart-period", positive=True)
    spec.restart_intensity = check_count("--restart-intensity", spec.restart_intensity, minimum=1)
    spec.health_interval = parse_duration(spec.health_interval, "--health-interval", positive=True)
    spec.health_timeout = parse_duration(spec.health_timeout, "--health-timeout", positive=True)
    spec.health_start_period = parse_duration(spec.health_start_period, "--health-start-period")
    spec.health_retries = check_count("--health-retries", spec.health_retries, minimum=1)


def _image_file(layers: tuple[Path, ...], rel: str) -> str | None:
    """The text of the regular file *rel* as the image's merged layers show it, if it is there
    (a symlink is not followed: it would point into this host)."""
    path = top_entry(layers, rel)
    try:
        if path is None or not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None
