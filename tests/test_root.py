"""Root-only behaviour, run as root by ``scripts/test``."""

from __future__ import annotations

import pytest
from conftest import Carrier

pytestmark = pytest.mark.root


def test_root_runs_without_user_namespace(carrier: Carrier, image: str) -> None:
    """As root, the container shares the host's user namespace (identity uid map) but still
    gets its own PID and network namespaces."""
    res = carrier("run", "--rm", image, "sh", "-c", "echo $$; cat /proc/self/uid_map; ls /sys/class/net")
    lines = res.out.split()
    assert lines[0] == "1", res.err
    assert lines[1:4] == ["0", "0", "4294967295"]
    assert lines[4:] == ["lo"]
