"""Kubernetes' ``$(VAR)`` references in env values, command and args, expanded as the kubelet
does: ``$(NAME)`` becomes the value of an already defined variable, ``$$`` is one ``$`` (so
``$$(NAME)`` is the literal ``$(NAME)``), and a reference to an unknown name stays as written."""

from __future__ import annotations

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$(?:(\$)|\(([^)]*)\))")


def expand(text: str, defined: Mapping[str, str]) -> str:
    """*text* with its references to *defined* replaced."""

    def one(m: re.Match[str]) -> str:
        if m[1]:
            return "$"
        return defined.get(m[2], m[0])

    return _REFERENCE.sub(one, text)
