"""carrier.sync: the library from plain, synchronous code (a private event loop in a thread)."""

from __future__ import annotations

import socket
import threading

import pytest
from conftest import Carrier

import carrier
import carrier.sync


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_run_serves_execs_and_stops(cli: Carrier, image: str, backend: carrier.sync.Backend
                                         ) -> None:
    """carrier.sync runs a ready container from plain code: published, exec, logs, stop and
    wait block until done; the event loop is a private thread that is gone afterwards."""
    script = "mkdir -p /www && echo hi-sync > /www/i && echo serving && exec httpd -f -p 80 -h /www"
    threads = set(threading.enumerate())
    with carrier.sync.using(backend)(
            image, ["sh", "-c", script], root=cli.root, ports={80: "127.0.0.1:0"},
            stop_timeout=0.2,
            wait_for=carrier.all_of(carrier.log_line("^serving$"), carrier.port(80))) as c:
        assert set(threading.enumerate()) - threads, "the loop runs in a thread of its own"
        host, port = c.published(80)
        with socket.create_connection((host, port), timeout=10) as s:  # a guard, not a wait
            s.sendall(b"GET /i HTTP/1.0\r\n\r\n")
            answer = b"".join(iter(lambda: s.recv(65536), b""))
        assert answer.endswith(b"hi-sync\n")
        assert c.exec(["sh", "-c", "cat /www/i; echo e >&2; exit 4"]) == \
            carrier.ExecResult(4, b"hi-sync\n", b"e\n")
        assert [line.data for line in c.logs()] == [b"serving"]
        c.stop()
        outcome = c.wait()
        assert outcome.reason is carrier.Reason.STOP_REQUESTED
    assert c.outcome == outcome
    left = [t for t in set(threading.enumerate()) - threads if not t.daemon]
    assert not left, "the loop's thread has ended (trio's idle worker cache is daemonic)"
    assert not any((cli.root / "containers").iterdir())


def test_sync_run_cleans_up_on_error(cli: Carrier, image: str) -> None:
    """An exception in the with block comes back as itself, and the container (and every
    process of it: the cli fixture checks) is stopped and removed first; typed options and
    library errors are the async API's."""
    seen: list[carrier.sync.Container] = []

    def failing_block() -> None:
        with carrier.sync.run(image, ["sleep", "100"], root=cli.root, network="none",
                              stop_timeout=0.2) as c:
            seen.append(c)
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        failing_block()
    assert seen[0].outcome is not None
    with pytest.raises(carrier.ReadyTimeoutError), \
            carrier.sync.run(image, ["sleep", "100"], root=cli.root, network="none",
                             stop_timeout=0.2, wait_for=carrier.log_line("never"),
                             wait_timeout=0.2):
        pass
    with pytest.raises(carrier.CarrierError, match="invalid backend"):
        carrier.sync.using("curio")  # type: ignore[arg-type]
    with pytest.raises(carrier.CarrierError, match="invalid network"), \
            carrier.sync.run(image, ["true"], root=cli.root, network="bogus"):  # type: ignore[arg-type]
        pass
    assert not any((cli.root / "containers").iterdir())
