"""A token bucket for one dyno's output: a flooding dyno cannot starve the others' lines."""

from __future__ import annotations

from dataclasses import dataclass

# Sustained lines per second per dyno, and how many may come at once above that.
RATE = 10_000.0
BURST = 50_000.0


@dataclass
class LineBudget:
    rate: float = RATE
    burst: float = BURST
    tokens: float = -1.0
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst  # a dyno starts with a full burst

    def take(self, wanted: int, now: float) -> int:
        """How many of `wanted` lines may go now (the rest are dropped)."""
        if self.updated is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        allowed = min(wanted, int(self.tokens))
        self.tokens -= allowed
        return allowed
