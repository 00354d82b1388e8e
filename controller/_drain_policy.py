"""A drain's policies, free of sockets: its bounded buffer, its backoff, what a status means.

The buffer is Logplex's: bounded, it drops its OLDEST lines when full (ingest never waits on a
drain), counts them, and remembers when the loss began, so the stream can be told
`Error L10 (output buffer overflow): N messages dropped since TS.`
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

import trio

from waka.controller._logs import format_time
from waka.v1.common_pb2 import LogLine

DEFAULT_BUFFER_LINES = 10_000


class Outcome(Enum):
    SENT = "sent"
    DROP = "drop"  # the receiver refused this batch for good: do not send it again
    RETRY = "retry"


def status_outcome(status: int) -> Outcome:
    """As Logplex: 2xx delivered; 4xx refused for good, except 429 (slow down); else retry."""
    if 200 <= status < 300:
        return Outcome.SENT
    if 400 <= status < 500 and status != 429:
        return Outcome.DROP
    return Outcome.RETRY


def overflow_text(count: int, since_us: int) -> str:
    return (
        f"Error L10 (output buffer overflow): {count} messages dropped since "
        f"{format_time(since_us)}."
    )


@dataclass(frozen=True)
class Backoff:
    """Exponential, capped, with "equal jitter": half the delay fixed, half random, so drains
    that failed together do not all come back at the same moment."""

    base: float = 0.5
    cap: float = 60.0
    rng: Callable[[], float] = random.random

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next try, after `failures` consecutive failures."""
        if failures <= 0:
            return 0.0
        ceiling = min(self.cap, self.base * 2 ** min(failures - 1, 62))
        return ceiling / 2 + self.rng() * ceiling / 2


class DrainBuffer:
    """Lines waiting for one drain. Lives on the trio thread."""

    def __init__(self, capacity: int, clock: Callable[[], float]) -> None:
        self.capacity = capacity
        self._clock = clock
        self._lines: deque[LogLine] = deque()
        self._dropped = 0
        self._dropped_since_us = 0
        self._has_lines = trio.Event()
        self._has_loss = trio.Event()

    def __len__(self) -> int:
        return len(self._lines)

    def extend(self, lines: Iterable[LogLine]) -> None:
        self._lines.extend(lines)
        overflow = len(self._lines) - self.capacity
        if overflow > 0:
            for _ in range(overflow):
                self._lines.popleft()
            self.lose(overflow)
        if self._lines:
            self._has_lines.set()

    def lose(self, count: int) -> None:
        """Counts lines that will never reach the drain (overflow, or a batch given up)."""
        if count <= 0:
            return
        if not self._dropped:
            self._dropped_since_us = int(self._clock() * 1_000_000)
        self._dropped += count
        self._has_loss.set()

    async def take(self, max_lines: int) -> list[LogLine]:
        """The oldest lines, up to `max_lines`, waiting for at least one."""
        while not self._lines:
            await self._has_lines.wait()
            self._has_lines = trio.Event()
        count = min(max_lines, len(self._lines))
        return [self._lines.popleft() for _ in range(count)]

    async def next_loss(self) -> None:
        """Returns once some lines have been lost since the last `take_loss`."""
        while not self._dropped:
            await self._has_loss.wait()
            self._has_loss = trio.Event()

    def take_loss(self) -> tuple[int, int] | None:
        """(count, since_us) of the lines lost since last asked, or None."""
        if not self._dropped:
            return None
        loss = (self._dropped, self._dropped_since_us)
        self._dropped = 0
        return loss
