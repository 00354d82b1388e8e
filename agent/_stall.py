"""Says when the agent's trio loop stops turning, and where it is stuck.

Everything the agent does runs on that loop: heartbeats, dyno supervision, log shipping. A call
that blocks it freezes them all at once; the controller then sees the node go silent and suspect,
and the agent's own log says nothing. A thread outside the loop notices instead, logs the loop
thread's stack once the stall passes a threshold, and logs again when the loop turns.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable

import trio


class StallWatch:
    def __init__(
        self,
        *,
        threshold: float = 3.0,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        stack_of: Callable[[int], str] | None = None,
    ) -> None:
        self.threshold = threshold
        self._log = log
        self._clock = clock
        self._stack_of = stack_of or _stack_of_thread
        self._last_beat = clock()
        self._last_look = self._last_beat
        # When this process last ran again after being stopped (SIGSTOP) or starved: the loop
        # is judged only from then on.
        self._resumed_at = self._last_beat
        self._stalled_since: float | None = None
        self._loop_thread = threading.get_ident()
        # How often the loop says it turns, and the watching thread looks: well inside the
        # threshold, so a loop that turns is never taken for a stalled one.
        self.interval = threshold / 6

    def beat(self) -> None:
        self._last_beat = self._clock()

    def check(self) -> None:
        """One look: says a stall once when it passes the threshold, and its end."""
        now = self._clock()
        if now - self._last_look >= self.threshold:
            # The watcher did not run either: the whole process was stopped, not the loop.
            self._resumed_at = now
        self._last_look = now
        silent = now - max(self._last_beat, self._resumed_at)
        if self._stalled_since is None:
            if silent >= self.threshold:
                self._stalled_since = now - silent
                self._log(
                    f"the agent's event loop has been blocked for {silent:.1f}s (heartbeats, "
                    f"dynos and logs wait), in:\n{self._stack_of(self._loop_thread)}"
                )
        elif silent < self.threshold:
            self._log(
                f"the agent's event loop turns again after "
                f"{self._last_beat - self._stalled_since:.1f}s"
            )
            self._stalled_since = None

    async def run(self) -> None:
        """Beats on the loop while a daemon thread watches; both end with the task."""
        self._loop_thread = threading.get_ident()
        self.beat()
        stop = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(stop,), name="stall-watch", daemon=True
        )
        watcher.start()
        try:
            while True:
                self.beat()
                await trio.sleep(self.interval)
        finally:
            stop.set()

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.check()


def _stack_of_thread(ident: int) -> str:
    frame = sys._current_frames().get(ident)
    if frame is None:
        return "  (the loop thread is gone)"
    return "".join(traceback.format_stack(frame)[-12:]).rstrip()
