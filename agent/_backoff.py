"""Heroku's crash-restart schedule, as a pure policy with an injected clock.

The first crash restarts at once; after that each crash waits a cool-off that doubles from 10 s up
to 20 minutes. A good start (up for `stable_after` seconds), a new release, a manual restart or a
scale resets the count — the last three make a new dyno instance, which starts with a fresh policy.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_COOL_OFF = 10.0
MAX_COOL_OFF = 20 * 60.0
STABLE_AFTER = 60.0


@dataclass
class CrashPolicy:
    first_cool_off: float = FIRST_COOL_OFF
    max_cool_off: float = MAX_COOL_OFF
    stable_after: float = STABLE_AFTER
    crashes: int = 0

    def on_exit(self, started_at: float, exited_at: float) -> float:
        """Records a crash; returns the delay before the next start."""
        if exited_at - started_at >= self.stable_after:
            self.crashes = 0
        self.crashes += 1
        if self.crashes == 1:
            return 0.0
        return min(self.first_cool_off * 2 ** (self.crashes - 2), self.max_cool_off)
