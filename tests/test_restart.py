"""Restart policies with real containers: Docker's flags, OTP's intensity limit, events."""

from __future__ import annotations

import itertools
import json
import os
import signal

from conftest import Carrier
from helpers import alive, events, helper_pid, wait_event, wait_pidfd, wait_unsupervised


class TestPolicies:
    def test_on_failure_n_restarts_exactly_n_times(self, carrier: Carrier, image: str) -> None:
        """on-failure:3 with a failing command: 3 restarts, then it gives up with the last code,
        and the delays between runs grow, each one really waited."""
        res = carrier("run", "--name", "f", "--no-network", "--restart", "on-failure:3",
                      "--restart-delay", "0.05", image, "sh", "-c", "exit 2")
        assert res.code == 2
        assert [e["delay"] for e in events(carrier, "restarting")] == [0.05, 0.1, 0.2]
        starts = [float(e["time"]) for e in events(carrier, "started")]  # type: ignore[arg-type]
        assert len(starts) == 4
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # Start to start is the run plus the delay; the run's own length varies with the load,
        # so only "no sooner than the delay" is the supervisor's promise.
        assert all(gap >= delay for gap, delay in zip(gaps, [0.05, 0.1, 0.2], strict=True)), gaps
        rec = carrier.record("f")
        assert rec["restarts"] == 3
        assert "gave up after 3 restarts" in str(rec["reason"])
        assert len(events(carrier, "gave-up")) == 1
        carrier("rm", "f")

    def test_always_gives_up_when_crash_looping(self, carrier: Carrier, image: str) -> None:
        """always, with intensity 3 in 10 s: a crash loop ends after 3 restarts."""
        res = carrier("run", "--name", "loop", "--no-network", "--restart", "always",
                      "--restart-delay", "0.01", "--restart-intensity", "3", image, "false")
        assert res.code == 1
        assert len(events(carrier, "restarting")) == 3
        assert "more than 3 restarts within 10 s" in str(carrier.record("loop")["reason"])
        carrier("rm", "loop")

    def test_success_is_not_restarted_on_failure(self, carrier: Carrier, image: str) -> None:
        """on-failure does not restart a command that succeeded."""
        assert carrier("run", "--name", "ok", "--no-network", "--restart", "on-failure",
                       image, "true").code == 0
        assert events(carrier, "restarting") == []
        carrier("rm", "ok")

    def test_restart_keeps_identity_and_files(self, carrier: Carrier, image: str) -> None:
        """A restart reuses the container's id, name and files, with fresh namespaces."""
        script = "test -e /mark && exit 0; touch /mark; exit 1"
        assert carrier("run", "--name", "same", "--no-network", "--restart", "on-failure",
                       "--restart-delay", "0.01", image, "sh", "-c", script).code == 0
        ids = {e["id"] for e in events(carrier)}
        assert len(ids) == 1
        assert carrier.record("same")["restarts"] == 1
        carrier("rm", "same")

    def test_rm_with_restart_is_refused(self, carrier: Carrier, image: str) -> None:
        """--rm and --restart conflict, as in Docker."""
        res = carrier("run", "--rm", "--restart", "always", image, "true")
        assert (res.code, res.err) == (125, "carrier: conflicting options: --restart and --rm\n")

    def test_invalid_policy(self, carrier: Carrier, image: str) -> None:
        """A policy Docker does not know is refused."""
        res = carrier("run", "--restart", "sometimes", image, "true")
        assert res.code == 125
        assert "invalid restart policy" in res.err


class TestRestartAndStop:
    def test_explicit_stop_never_restarts(self, carrier: Carrier, image: str) -> None:
        """stop on an always-restarting container ends it for good."""
        assert carrier("run", "-d", "--name", "s", "--no-network", "--restart", "always",
                       image, "sleep", "100").code == 0
        assert carrier("stop", "-t", "0", "s").code == 0
        rec = carrier.record("s")
        assert (rec["status"], rec["restarts"]) == ("exited", 0)
        assert events(carrier, "restarting") == []
        carrier("rm", "s")

    def test_dead_helper_restarts_with_a_fresh_one(self, carrier: Carrier, image: str) -> None:
        """A helper killed from outside ends the run (125) and the policy restarts the
        container with fresh namespaces and a fresh helper."""
        assert carrier("run", "-d", "--name", "h", "--network", "pasta", "--restart",
                       "on-failure", "--restart-delay", "0.01", image, "sleep", "100").code == 0
        first = helper_pid(carrier, "h")
        os.kill(first, signal.SIGKILL)
        wait_pidfd(first)
        wait_event(carrier, "started", count=2)
        second = helper_pid(carrier, "h")
        assert second != first
        assert alive(second)
        exited = events(carrier, "exited")[0]
        assert (exited["exit_code"], exited["reason"]) == (125, "helper-exited")
        assert carrier("rm", "-f", "h").code == 0


class TestEvents:
    def test_lifecycle_in_order(self, carrier: Carrier, image: str) -> None:
        """carrier events shows a container's life in order, as JSON lines."""
        assert carrier("run", "--rm", "--name", "ev", "--network", "slirp4netns", image,
                       "true").code == 0
        res = carrier("events", "--format", "json")
        kinds = [json.loads(line)["type"] for line in res.out.splitlines()]
        assert kinds == ["created", "network-ready", "started", "exited", "cleaned"]
        table = carrier("events").out
        assert "network-ready" in table
        assert "ev (" in table

    def test_follow_streams_new_events(self, carrier: Carrier, image: str) -> None:
        """events -f keeps streaming what supervisors write next."""
        import subprocess

        follower = carrier.popen("events", "-f", "--format", "json", stdout=subprocess.PIPE)
        assert follower.stdout is not None
        try:
            assert carrier("run", "--rm", "--no-network", image, "true").code == 0
            kinds = [json.loads(follower.stdout.readline())["type"] for _ in range(5)]
            assert kinds == ["created", "network-ready", "started", "exited", "cleaned"]
        finally:
            follower.kill()
            follower.wait()
            follower.stdout.close()


class TestStopBetweenRestarts:
    def test_stop_during_the_backoff(self, carrier: Carrier, image: str) -> None:
        """A container waiting out its restart delay is stopped for good by carrier stop."""
        assert carrier("run", "-d", "--name", "wait", "--no-network", "--restart", "always",
                       "--restart-delay", "30", "--restart-max-delay", "60", image,
                       "false").code == 0
        wait_event(carrier, "restarting", count=1)
        rec = carrier.record("wait")
        assert carrier("stop", "wait").code == 0
        wait_unsupervised(rec, bound=10)  # well before the 30 s delay would have run out
        assert len(events(carrier, "started")) == 1
        assert carrier("rm", "wait").code == 0
