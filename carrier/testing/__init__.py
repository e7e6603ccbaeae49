"""Carrier's pytest plugin and test helpers: container fixtures that show a failed test its
containers' output, images from a root filesystem, and leak checks.

Load it explicitly, ``pytest_plugins = ["carrier.testing"]`` in a conftest.py or
``pytest -p carrier.testing``; installing Carrier never loads it by itself.
"""

from __future__ import annotations

from ._fixture import LOG_LINES, container_fixture, pytest_runtest_makereport, use
from ._image import build_image
from ._leaks import LeakCheck, Leftovers, no_leftovers, still_alive, user_processes

__all__ = [
    "LOG_LINES",
    "LeakCheck",
    "Leftovers",
    "build_image",
    "container_fixture",
    "no_leftovers",
    "pytest_runtest_makereport",
    "still_alive",
    "use",
    "user_processes",
]
