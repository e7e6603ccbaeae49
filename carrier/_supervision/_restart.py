"""Restart policies, Docker's spelling with OTP's intensity limit.

``--restart no|on-failure[:N]|always|unless-stopped``. The delay before each restart doubles
from ``--restart-delay`` up to ``--restart-max-delay`` and starts over after a run that lasted
longer than the maximum delay. More than ``--restart-intensity`` restarts within
``--restart-period`` seconds means the container is crash-looping: Carrier gives up, as an OTP
supervisor does. An explicit stop never leads to a restart.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from .._util._errors import CarrierError

MODES = ("no", "on-failure", "always", "unless-stopped")


@dataclass(frozen=True)
class RestartPolicy:
    """What to do when a container's run ends."""

    mode: str = "no"
    max_retries: int = 0  # on-failure:N; 0 means no limit
    delay: float = 0.1
    max_delay: float = 10.0
    intensity: int = 5
    period: float = 10.0

    @classmethod
    def parse(cls, text: str, *, delay: float = 0.1, max_delay: float = 10.0,
              intensity: int = 5, period: float = 10.0) -> RestartPolicy:
        """Parse ``--restart`` and its companions, refusing what does not make sense."""
        mode, _, count = text.partition(":")
        if mode not in MODES or (count and mode != "on-failure"):
            raise CarrierError(
                f"invalid restart policy {text!r}: use no, on-failure[:N], always or unless-stopped"
            )
        if count and (not count.isdigit() or int(count) < 0):
            raise CarrierError(f"invalid restart policy {text!r}: N must be a whole number")
        if delay < 0 or max_delay < delay or intensity < 1 or period <= 0:
            raise CarrierError("invalid restart timing: need 0 <= delay <= max delay, "
                               "intensity >= 1, period > 0")
        return cls(mode, int(count or 0), delay, max_delay, intensity, period)


class RestartTracker:
    """Decides, run after run, whether and when to restart."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.count = 0
        self._streak = 0
        self._recent: collections.deque[float] = collections.deque()

    def decide(self, exit_code: int, *, stopped: bool, now: float, ran_for: float,
               force: bool = False) -> float | str | None:
        """The delay before the next run; a reason to give up (str); or None: done, normally.

        *force* restarts whatever the policy (``--health-on-failure=restart``), still within
        the intensity limit.
        """
        p = self.policy
        if stopped:
            return None
        if not force and (p.mode == "no" or (p.mode == "on-failure" and exit_code == 0)):
            return None
        if not force and p.mode == "on-failure" and p.max_retries and self.count >= p.max_retries:
            return f"gave up after {self.count} restarts (on-failure:{p.max_retries})"
        while self._recent and now - self._recent[0] > p.period:
            self._recent.popleft()
        if len(self._recent) >= p.intensity:
            return f"gave up: more than {p.intensity} restarts within {p.period:g} s"
        if ran_for > p.max_delay:  # it ran a good while: the backoff starts over
            self._streak = 0
        delay = float(min(p.delay * 2 ** self._streak, p.max_delay))
        self._streak += 1
        self._recent.append(now)
        self.count += 1
        return delay
