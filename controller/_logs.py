"""The log stream's core: per-app history, live tails with bounded buffers, platform lines.

Everything here runs on the trio thread, so publishing and opening a tail are atomic with respect to
each other: a tail gets a snapshot of history and every later line, with no gap and no duplicate.
Ingest never waits on a reader: a tail that falls behind loses its oldest lines, and is told so.

The in-memory ring is the recent history. With a `LogStore`, every published line also goes to
disk (`--since`/`--until` reach back days, and the ring is refilled from disk after a restart), and
sinks (the drains) get every line too; both only queue what they are handed, so publishing stays
as cheap as before.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from waka.v1.common_pb2 import LogLine

if TYPE_CHECKING:
    from waka.controller._logstore import LogStore

DEFAULT_HISTORY = 1500
DEFAULT_TAIL_BUFFER = 10_000
# What a reader takes in one go. Each batch costs a crossing into trio and a gRPC message, so
# under load (controller and agent sharing one GIL in `waka up`) 500-line batches capped a tail
# near 35k lines/s and it lost lines (L11); 5000 did not. The byte bound keeps a message far
# below gRPC's 4 MB default limit even with 10 kB lines.
TAIL_BATCH_LINES = 5000
TAIL_BATCH_BYTES = 1_000_000
# Heroku splits longer lines into chunks of this many bytes.
MAX_LINE_BYTES = 10_000


@dataclass(frozen=True)
class LogFilter:
    source: str = ""
    dyno: str = ""

    def matches(self, line: LogLine) -> bool:
        if self.source and line.source != self.source:
            return False
        # As Logplex does: `web` matches `web.1` and `web.2`, `web.1` only itself.
        return not self.dyno or line.dyno == self.dyno or line.dyno.startswith(self.dyno + ".")


def now_us(clock: Callable[[], float] = time.time) -> int:
    return int(clock() * 1_000_000)


def format_time(time_us: int) -> str:
    moment = dt.datetime.fromtimestamp(time_us / 1_000_000, tz=dt.UTC)
    return moment.isoformat(timespec="microseconds")


def split_long(text: str) -> list[str]:
    """Splits a line longer than MAX_LINE_BYTES into chunks of at most that many bytes."""
    raw = text.encode()
    if len(raw) <= MAX_LINE_BYTES:
        return [text]
    return [
        raw[i : i + MAX_LINE_BYTES].decode(errors="replace")
        for i in range(0, len(raw), MAX_LINE_BYTES)
    ]


class Tail:
    """One reader's view of an app's stream: a bounded buffer that drops its oldest lines."""

    def __init__(self, app: str, log_filter: LogFilter, capacity: int, clock: Callable[[], float]):
        self.app = app
        self.filter = log_filter
        self._capacity = capacity
        self._clock = clock
        self._buffer: deque[LogLine] = deque()
        self._dropped = 0
        self._dropped_since_us = 0
        self._wakeup = trio.Event()
        self.closed = False

    def offer(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            if not self.filter.matches(line):
                continue
            if len(self._buffer) >= self._capacity:
                self._buffer.popleft()
                if not self._dropped:
                    self._dropped_since_us = now_us(self._clock)
                self._dropped += 1
            self._buffer.append(line)
        if self._buffer:
            self._wakeup.set()

    async def next_batch(
        self, max_lines: int = TAIL_BATCH_LINES, max_bytes: int = TAIL_BATCH_BYTES
    ) -> list[LogLine] | None:
        """The next lines for this reader (at least one, at most max_lines and about max_bytes
        of text), waiting for some; None once the tail is closed."""
        while not self._buffer and not self.closed:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        if self.closed and not self._buffer:
            return None
        batch: list[LogLine] = []
        if self._dropped:
            batch.append(self._overflow_line())
            self._dropped = 0
        size = 0
        while self._buffer and len(batch) < max_lines and (size < max_bytes or not batch):
            line = self._buffer.popleft()
            size += len(line.text) + 64  # the other fields and the framing, roughly
            batch.append(line)
        return batch

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    def _overflow_line(self) -> LogLine:
        return LogLine(
            time_us=now_us(self._clock),
            app=self.app,
            source="waka",
            dyno="logplex",
            text=(
                f"Error L11 (Tail buffer overflow) -> This tail session dropped {self._dropped} "
                f"messages since {format_time(self._dropped_since_us)}."
            ),
        )


class LogHub:
    def __init__(
        self,
        *,
        history: int = DEFAULT_HISTORY,
        tail_buffer: int = DEFAULT_TAIL_BUFFER,
        clock: Callable[[], float] = time.time,
        store: LogStore | None = None,
    ) -> None:
        self._history_size = history
        self._tail_buffer = tail_buffer
        self._clock = clock
        self._history: dict[str, deque[LogLine]] = {}
        self._tails: dict[str, set[Tail]] = {}
        self._store = store
        self._sinks: list[Callable[[list[LogLine]], None]] = []
        if store is not None:
            store.report_to(lambda app, text: self.emit(app, text, dyno="logplex"))

    def add_sink(self, sink: Callable[[list[LogLine]], None]) -> None:
        """`sink(lines)` gets every published line (one app per call); it must not block."""
        self._sinks.append(sink)

    def publish(self, lines: Iterable[LogLine]) -> None:
        by_app: dict[str, list[LogLine]] = {}
        for line in lines:
            by_app.setdefault(line.app, []).append(line)
        for app, app_lines in by_app.items():
            history = self._history.get(app)
            if history is None:
                history = self._history[app] = deque(maxlen=self._history_size)
            history.extend(app_lines)
            for tail in self._tails.get(app, ()):
                tail.offer(app_lines)
            if self._store is not None:
                self._store.append(app_lines)
            for sink in self._sinks:
                sink(app_lines)

    def emit(self, app: str, text: str, *, source: str = "waka", dyno: str = "api") -> None:
        """Publishes a platform line, e.g. `waka[api]: Release v2 created by admin`."""
        self.publish(
            LogLine(time_us=now_us(self._clock), app=app, source=source, dyno=dyno, text=part)
            for part in split_long(text)
        )

    def history(self, app: str, log_filter: LogFilter, num: int) -> list[LogLine]:
        if num <= 0:
            return []
        matching = [line for line in self._history.get(app, ()) if log_filter.matches(line)]
        return matching[-num:]

    async def query(
        self,
        app: str,
        log_filter: LogFilter,
        num: int,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[LogLine]:
        """The last `num` lines in [since_us, until_us): from disk when there is a store,
        otherwise from the ring. (Positional parameters, so `Bridge.run` can pass them.)"""
        if since_us is None and until_us is None:
            return self.history(app, log_filter, num)
        if self._store is None:
            return [
                line
                for line in self.history(app, log_filter, len(self._history.get(app, ())))
                if (since_us is None or line.time_us >= since_us)
                and (until_us is None or line.time_us < until_us)
            ][-num:]
        return await self._store.query(
            app, since_us=since_us, until_us=until_us, log_filter=log_filter, limit=num
        )

    def open_tail(self, app: str, log_filter: LogFilter, num: int) -> tuple[list[LogLine], Tail]:
        tail = self._subscribe(app, log_filter)
        return self.history(app, log_filter, num), tail

    async def open_tail_since(
        self, app: str, log_filter: LogFilter, num: int, since_us: int
    ) -> tuple[list[LogLine], Tail]:
        """Like `open_tail`, with history from `since_us` on (from disk when there is a store).

        The tail subscribes and the store notes the app's last seq in the same step (no
        checkpoint between them), then history is read up to that seq: every line is either
        in the history or in the tail, never both, never neither.
        """
        if self._store is None:
            tail = self._subscribe(app, log_filter)
            return await self.query(app, log_filter, num, since_us=since_us), tail
        tail = self._subscribe(app, log_filter)
        upto = self._store.mark(app)
        try:
            history = await self._store.query(
                app, since_us=since_us, log_filter=log_filter, limit=num, upto_seq=upto
            )
        except BaseException:
            self.close_tail(tail)
            raise
        return history, tail

    async def preload(self, per_app: int | None = None) -> None:
        """Refills each app's ring from the store (after a restart). Call before ingest starts:
        preloaded lines go before anything already in the ring."""
        if self._store is None:
            return
        recent = await self._store.recent(per_app or self._history_size)
        for app, lines in recent.items():
            ring: deque[LogLine] = deque(lines, maxlen=self._history_size)
            ring.extend(self._history.get(app, ()))
            self._history[app] = ring

    def _subscribe(self, app: str, log_filter: LogFilter) -> Tail:
        tail = Tail(app, log_filter, self._tail_buffer, self._clock)
        self._tails.setdefault(app, set()).add(tail)
        return tail

    def close_tail(self, tail: Tail) -> None:
        tail.close()
        tails = self._tails.get(tail.app)
        if tails is not None:
            tails.discard(tail)
            if not tails:
                del self._tails[tail.app]

    def forget(self, app: str) -> None:
        """Drops an app's history, in memory and on disk, and ends its tails (the app was
        destroyed)."""
        self._history.pop(app, None)
        if self._store is not None:
            self._store.forget(app)
        for tail in self._tails.pop(app, set()):
            tail.close()

    def close(self) -> None:
        for app in list(self._tails):
            for tail in self._tails.pop(app):
                tail.close()
