"""Timeouts for the router's hot path: a task that cancels scopes whose deadline has passed.

A trio deadline is the natural tool, but on these machines entering a cancel scope with a deadline
costs about 29 µs and moving a deadline about 7 µs (trio re-sorts its deadline heap each time),
and a proxied request moves its deadline three or four times: a third of the router's CPU per
small request. Here a deadline is a float on a `Timer`, moved by a plain attribute store, and the
watchdog looks at every armed timer once per `tick`. Timeouts fire up to one tick late, which is
immaterial for Heroku's 30 s and 55 s windows (the tick is a tenth of the shortest timeout).
"""

from __future__ import annotations

import math

import trio


class Timer:
    __slots__ = ("at", "fired", "scope")

    def __init__(self, scope: trio.CancelScope, at: float) -> None:
        self.scope = scope
        self.at = at  # trio clock; math.inf disarms it without removing it
        self.fired = False


class Watchdog:
    def __init__(self, tick: float) -> None:
        if not 0 < tick < math.inf:
            raise ValueError(f"watchdog tick must be a positive number of seconds, not {tick}")
        self.tick = tick
        self._timers: set[Timer] = set()

    def arm(self, scope: trio.CancelScope, at: float) -> Timer:
        timer = Timer(scope, at)
        self._timers.add(timer)
        return timer

    def disarm(self, timer: Timer) -> None:
        self._timers.discard(timer)

    def check(self, now: float) -> None:
        expired = [timer for timer in self._timers if timer.at <= now]
        for timer in expired:
            self._timers.discard(timer)
            timer.fired = True
            timer.scope.cancel()

    async def run(self) -> None:
        while True:
            await trio.sleep(self.tick)
            self.check(trio.current_time())
