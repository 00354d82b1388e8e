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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from waka.v1.common_pb2 import LogBatch, LogLine

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

    def select(self, lines: Sequence[LogLine]) -> Sequence[LogLine]:
        """The lines that match (`lines` itself when all do): `matches`, a batch at a time."""
        selected = lines
        if self.source:
            source = self.source
            selected = [line for line in selected if line.source == source]
        if self.dyno:
            dyno, prefix = self.dyno, self.dyno + "."
            selected = [
                line for line in selected if line.dyno == dyno or line.dyno.startswith(prefix)
            ]
        return lines if len(selected) == len(lines) else selected


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


class SerializedBatch:
    """A LogBatch and its bytes, serialized once for everyone who sends or stores it (tails
    on the trio thread, the store on its worker thread: at worst both serialize it)."""

    __slots__ = ("_data", "batch")

    def __init__(self, batch: LogBatch) -> None:
        self.batch = batch
        self._data: bytes | None = None

    @classmethod
    def of(cls, lines: Sequence[LogLine]) -> SerializedBatch:
        """A batch of copies of the lines (for lines that did not come as one batch)."""
        return cls(LogBatch(lines=lines))

    def data(self) -> bytes:
        if self._data is None:
            self._data = self.batch.SerializeToString()
        return self._data


@dataclass
class _Piece:
    """Lines a tail holds, as they were offered together; `whole`, when known, is the batch
    holding exactly these lines, so they are sent on as its serialization with no copying."""

    lines: Sequence[LogLine]
    whole: SerializedBatch | None = None

    def payload(self) -> bytes:
        if self.whole is None:
            self.whole = SerializedBatch.of(self.lines)
        return self.whole.data()

    def cut(self, count: int) -> _Piece:
        """Takes the first `count` lines off this piece and returns them."""
        front = _Piece(self.lines[:count])
        self.lines, self.whole = self.lines[count:], None
        return front


class Tail:
    """One reader's view of an app's stream: a bounded buffer that drops its oldest lines."""

    def __init__(self, app: str, log_filter: LogFilter, capacity: int, clock: Callable[[], float]):
        self.app = app
        self.filter = log_filter
        self._capacity = capacity
        self._clock = clock
        self._pieces: deque[_Piece] = deque()
        self._buffered = 0
        self._dropped = 0
        self._dropped_since_us = 0
        self._wakeup = trio.Event()
        self.closed = False

    def offer(self, lines: Sequence[LogLine], batch: SerializedBatch | None = None) -> None:
        """Buffers the lines that pass the filter; `batch`, if given, holds exactly `lines`."""
        selected = self.filter.select(lines)
        if not selected:
            return
        self._pieces.append(_Piece(selected, batch if selected is lines else None))
        self._buffered += len(selected)
        overflow = self._buffered - self._capacity
        if overflow > 0:
            if not self._dropped:
                self._dropped_since_us = now_us(self._clock)
            self._dropped += overflow
            self._buffered -= overflow
            while overflow:
                oldest = self._pieces[0]
                if len(oldest.lines) <= overflow:
                    overflow -= len(self._pieces.popleft().lines)
                else:
                    oldest.cut(overflow)
                    overflow = 0
        self._wakeup.set()

    async def next_batch(
        self, max_lines: int = TAIL_BATCH_LINES, max_bytes: int = TAIL_BATCH_BYTES
    ) -> list[LogLine] | None:
        """The next lines for this reader (at least one, at most max_lines and about max_bytes
        serialized), waiting for some; None once the tail is closed."""
        pieces = await self._next_pieces(max_lines, max_bytes)
        return None if pieces is None else [line for piece in pieces for line in piece.lines]

    async def next_payload(
        self, max_lines: int = TAIL_BATCH_LINES, max_bytes: int = TAIL_BATCH_BYTES
    ) -> bytes | None:
        """Like `next_batch`, as one serialized LogBatch (serialized batches concatenate)."""
        pieces = await self._next_pieces(max_lines, max_bytes)
        return None if pieces is None else b"".join(piece.payload() for piece in pieces)

    async def _next_pieces(self, max_lines: int, max_bytes: int) -> list[_Piece] | None:
        while not self._pieces and not self.closed:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        if self.closed and not self._pieces:
            return None
        taken: list[_Piece] = []
        if self._dropped:
            taken.append(_Piece([self._overflow_line()]))
            self._dropped = 0
        lines = size = 0
        while self._pieces and lines < max_lines and (size < max_bytes or not taken):
            head = self._pieces[0]
            count = min(len(head.lines), max_lines - lines)
            # The share of the piece's size these lines take, as an estimate (lines of a piece
            # are alike); only a piece that seems not to fit is measured line by line.
            if count > 1 and size + len(head.payload()) * count // len(head.lines) > max_bytes:
                count = _fitting(head.lines[:count], max_bytes - size)
            piece = head.cut(count) if count < len(head.lines) else self._pieces.popleft()
            taken.append(piece)
            lines += len(piece.lines)
            size += len(piece.payload())
        self._buffered -= lines
        return taken

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


def _fitting(lines: Sequence[LogLine], room: int) -> int:
    """How many of the first lines fit in `room` bytes serialized (at least one)."""
    size = 0
    for count, line in enumerate(lines):
        size += line.ByteSize() + 5  # the field's tag and length
        if size >= room:
            return count + 1
    return len(lines)


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
        # Streams whose lines also go to other apps' streams: a managed add-on's output to the
        # apps it is attached to, as `app[ADDON]`.
        self._mirrors: dict[str, tuple[str, ...]] = {}
        # Former names of renamed apps: their dynos not replaced yet still say the old one.
        self._renamed: dict[str, str] = {}
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
            self.publish_app(app, app_lines)

    def set_mirrors(self, mirrors: Mapping[str, Iterable[str]]) -> None:
        """From now on the lines of each stream `name` are also published to the apps
        `mirrors[name]`, with `name` as their dyno (the whole mapping, not a change)."""
        self._mirrors = {name: tuple(apps) for name, apps in mirrors.items() if apps}

    def publish_app(
        self, app: str, lines: Sequence[LogLine], batch: LogBatch | None = None
    ) -> None:
        """Publishes lines that are all of `app`; `batch`, if given, is a LogBatch holding
        exactly these lines (the tails and the store then pass it on instead of copying)."""
        if app in self._renamed:
            app = self._renamed[app]
            lines = [_retagged(line, app) for line in lines]
            batch = None
        self._deliver(app, lines, batch)
        for target in self._mirrors.get(app, ()):
            self._deliver(
                target,
                [
                    LogLine(
                        time_us=line.time_us,
                        app=target,
                        source=line.source,
                        dyno=app,
                        text=line.text,
                    )
                    for line in lines
                ],
            )

    def _deliver(self, app: str, lines: Sequence[LogLine], batch: LogBatch | None = None) -> None:
        history = self._history.get(app)
        if history is None:
            history = self._history[app] = deque(maxlen=self._history_size)
        history.extend(lines)
        whole = SerializedBatch(batch) if batch is not None else None
        for tail in self._tails.get(app, ()):
            tail.offer(lines, whole)
        if self._store is not None:
            self._store.append_app(app, lines, batch=whole)
        for sink in self._sinks:
            sink(lines if isinstance(lines, list) else list(lines))

    def emit(self, app: str, text: str, *, source: str = "waka", dyno: str = "api") -> None:
        """Publishes a platform line, e.g. `waka[api]: Release v2 created by admin`."""
        time_us = now_us(self._clock)
        # The router emits a line per request: short lines skip the byte count.
        parts = [text] if len(text) <= MAX_LINE_BYTES // 4 else split_long(text)
        self.publish_app(
            app,
            [
                LogLine(time_us=time_us, app=app, source=source, dyno=dyno, text=part)
                for part in parts
            ],
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

    def rename(self, old: str, new: str) -> None:
        """The app `old` is called `new`: its history (in memory and on disk), tails and
        mirrors follow, and lines still published under `old` go to `new`."""
        self._renamed = {
            former: new if current == old else current for former, current in self._renamed.items()
        }
        self._renamed.pop(new, None)
        self._renamed[old] = new
        if (history := self._history.pop(old, None)) is not None:
            self._history[new] = history
        tails = self._tails.pop(old, set())
        for tail in tails:
            tail.app = new
        if tails:
            self._tails.setdefault(new, set()).update(tails)
        self._mirrors = {
            new if name == old else name: tuple(new if t == old else t for t in targets)
            for name, targets in self._mirrors.items()
        }
        if self._store is not None:
            self._store.rename(old, new)

    def name_taken(self, app: str) -> None:
        """A new app is called `app`: lines under that name are its own, not a renamed one's."""
        self._renamed.pop(app, None)

    def forget(self, app: str) -> None:
        """Drops an app's history, in memory and on disk, and ends its tails (the app was
        destroyed); no stream is mirrored to it any more."""
        self._renamed = {k: v for k, v in self._renamed.items() if v != app}
        self._history.pop(app, None)
        self._mirrors = {
            name: kept
            for name, targets in self._mirrors.items()
            if name != app and (kept := tuple(t for t in targets if t != app))
        }
        if self._store is not None:
            self._store.forget(app)
        for tail in self._tails.pop(app, set()):
            tail.close()

    def close(self) -> None:
        for app in list(self._tails):
            for tail in self._tails.pop(app):
                tail.close()


def _retagged(line: LogLine, app: str) -> LogLine:
    copy = LogLine()
    copy.CopyFrom(line)
    copy.app = app
    return copy
