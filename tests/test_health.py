"""Health checks with real containers: Docker's flags, Podman's --health-on-failure."""

from __future__ import annotations

import json

from conftest import Carrier
from helpers import events, wait_event


class TestHealth:
    def test_healthy_then_unhealthy_then_killed(self, carrier: Carrier, image: str) -> None:
        """A check that starts failing makes the container unhealthy within interval x
        retries; with kill, the group ends and carrier info shows the state and outputs."""
        script = "touch /ok; exec sleep 100"
        res = carrier("run", "--name", "hc", "--no-network", "--health-cmd",
                      "test -e /ok && echo fine || (echo broken; exit 1)",
                      "--health-interval", "200ms", "--health-retries", "2",
                      "--health-on-failure", "kill", "--stop-timeout", "0.5", "-d", image,
                      "sh", "-c", script)
        assert res.code == 0, res.err
        wait_event(carrier, "healthy", count=1)
        assert carrier("exec", "hc", "rm", "/ok").code == 0
        wait_event(carrier, "cleaned", count=1)
        rec = carrier.record("hc")
        assert str(rec["reason"]).startswith("unhealthy: unhealthy after 2 failed checks")
        health = rec["health"]
        assert isinstance(health, dict)
        assert health["status"] == "unhealthy"
        assert health["log"][-1]["output"] == "broken\n"
        assert health["log"][-1]["exit_code"] == 1
        kinds = [e["type"] for e in events(carrier)]
        assert kinds.index("healthy") < kinds.index("unhealthy") < kinds.index("exited")
        carrier("rm", "hc")

    def test_restart_on_unhealthy(self, carrier: Carrier, image: str) -> None:
        """--health-on-failure=restart restarts the container even with restart policy no."""
        res = carrier("run", "--name", "hr", "--no-network", "--health-cmd", "false",
                      "--health-interval", "100ms", "--health-retries", "1",
                      "--health-on-failure", "restart", "--stop-timeout", "0.2",
                      "--restart-delay", "0.01", "--restart-intensity", "2", "-d", image,
                      "sleep", "100")
        assert res.code == 0, res.err
        wait_event(carrier, "cleaned", count=1)
        assert len(events(carrier, "restarting")) == 2
        assert "more than 2 restarts" in str(carrier.record("hr")["reason"])
        carrier("rm", "hr")

    def test_none_only_records(self, carrier: Carrier, image: str) -> None:
        """With the default (none), an unhealthy container keeps running."""
        assert carrier("run", "--name", "hn", "--no-network", "--health-cmd", "exit 3",
                       "--health-interval", "100ms", "--health-retries", "1", "-d", image,
                       "sleep", "100").code == 0
        wait_event(carrier, "unhealthy", count=1)
        rec = carrier.record("hn")
        assert rec["status"] == "running"
        assert json.dumps(rec["health"]).count('"exit_code": 3') >= 1
        assert carrier("rm", "-f", "hn").code == 0

    def test_bad_flags(self, carrier: Carrier, image: str) -> None:
        """Bad health flags are refused before anything starts."""
        res = carrier("run", "--health-cmd", "true", "--health-interval", "soon", image, "true")
        assert res.code == 125
        assert "invalid --health-interval" in res.err
