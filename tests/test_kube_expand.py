"""`$(VAR)` expansion of kube play, as Kubernetes does it (unit)."""

from __future__ import annotations

import pytest

from carrier._kube._expand import expand


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)", "a"),
    ("x-$(A)-$(B)-y", "x-a-b b-y"),
    ("$(NOPE)", "$(NOPE)"),
    ("$$(A)", "$(A)"),
    ("$$$(A)", "$a"),
    ("$$", "$"),
    ("$A ${A} $", "$A ${A} $"),
    ("$(A", "$(A"),
    ("$()", "$()"),
    ("$(A)$(A)", "aa"),
])
def test_expand_as_kubernetes(text: str, expected: str) -> None:
    """A reference to a defined name is its value, $$ is one $, and anything else stays."""
    assert expand(text, {"A": "a", "B": "b b"}) == expected
