"""The library's option values, checked and turned into what the CLI would have passed.

Type checkers catch most mistakes through the ``Literal`` types of :func:`carrier.run`; these
checks catch the rest at run time (an untyped caller, a value built at run time) with a
:class:`CarrierError` that names the option, before anything is pulled or stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, get_args

from .._util._errors import CarrierError

NetworkMode = Literal["auto", "pasta", "slirp4netns", "none", "host"]
Pull = Literal["missing", "always", "never"]
StorageDriver = Literal["auto", "overlay", "fuse-overlayfs", "copy"]
HealthAction = Literal["none", "kill", "restart"]

Env = Mapping[str, str] | Sequence[str]
"""``{"KEY": "value"}``, or ``["KEY=value", "KEY"]`` (a bare KEY takes this process's value)."""

Ports = Mapping[int | str, int | str] | Sequence[str]
"""``{80: 0, 81: "127.0.0.1:0", "53/udp": 5353}`` (container port -> ``[HOST_IP:]HOST_PORT``,
0 = any free port), or a list of ``-p`` values (``["127.0.0.1:8080:80"]``)."""

_CHOICES = {"network": NetworkMode, "pull": Pull, "storage_driver": StorageDriver,
            "health_on_failure": HealthAction}
_CONTAINER_PORT = re.compile(r"[0-9]+(/(tcp|udp))?")
_ENV_KEY = re.compile(r"[^=\s]+")


def check_choice(option: str, value: object) -> None:
    """Refuse a value outside the option's ``Literal`` choices."""
    choices: tuple[str, ...] = get_args(_CHOICES[option])
    if value not in choices:
        raise CarrierError(f"invalid {option}={value!r}: choose {', '.join(choices)}")


def check_flag(option: str, value: object) -> bool | None:
    """A yes/no option: True, False or None (the CLI's default); anything else is refused."""
    if value is not None and not isinstance(value, bool):
        raise CarrierError(f"invalid {option}={value!r}: expected True or False")
    return value


def strings(option: str, value: Iterable[str] | None) -> list[str]:
    """A list of strings; a lone string is refused (it would be split into characters)."""
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise CarrierError(f"invalid {option}={value!r}: expected a list of strings")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise CarrierError(f"invalid {option} item {item!r}: expected a string")
    return items


def env_items(env: Env | None) -> list[str]:
    """``KEY=VALUE`` strings from a mapping or a list; nothing is dropped silently: a bad key,
    a non-string value or a bare KEY unset in this process is refused."""
    if env is None:
        return []
    if isinstance(env, Mapping):
        items = []
        for key, value in env.items():
            if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
                raise CarrierError(f"invalid env key {key!r}: expected a name without '=' or spaces")
            if not isinstance(value, str):
                raise CarrierError(f"invalid env value for {key}: {value!r} is not a string")
            items.append(f"{key}={value}")
        return items
    items = strings("env", env)
    for item in items:
        key, sep, _ = item.partition("=")
        if not _ENV_KEY.fullmatch(key):
            raise CarrierError(f"invalid env item {item!r}: expected KEY=VALUE")
        if not sep and key not in os.environ:
            raise CarrierError(f"invalid env item {item!r}: {key} is not set in this process, "
                               "so it has no value to pass")
    return items


def port_specs(ports: Ports | None) -> list[str]:
    """``-p`` values from a mapping keyed by container port, or from a list of them.

    The earlier mapping keyed by host address (``{"127.0.0.1:0": 80}``) is refused: read the
    new way it would publish the wrong port.
    """
    if ports is None:
        return []
    if not isinstance(ports, Mapping):
        return strings("ports", ports)
    specs = []
    for ctr, host in ports.items():
        if isinstance(ctr, bool) or not (isinstance(ctr, int) or
                                         (isinstance(ctr, str) and _CONTAINER_PORT.fullmatch(ctr))):
            raise CarrierError(
                f"invalid ports key {ctr!r}: keys are container ports (80 or '53/udp') mapped to "
                "'[HOST_IP:]HOST_PORT' ({80: '127.0.0.1:0'}); the old mapping keyed by host "
                "address is gone")
        if isinstance(host, bool) or not isinstance(host, int | str):
            raise CarrierError(f"invalid ports value for {ctr}: {host!r} (expected a host port "
                               "or '[HOST_IP:]HOST_PORT')")
        port, _, proto = str(ctr).partition("/")
        specs.append(f"{host}:{port}" + (f"/{proto}" if proto else ""))
    return specs
