"""Durable per-app log history on disk, so `--since` and `--until` outlive dynos and restarts.

Layout: one directory per app under the root, holding segment files `<first seq>.seg` and a small
`index.json` that describes the sealed ones (seq and time range, size), so a query opens only the
segments whose time range overlaps it. A segment is a run of records:

    header (36 bytes, little-endian): payload length u32, crc32 u32, first seq u64, line count u32,
                                      min time_us i64, max time_us i64
    payload: a serialized LogBatch (the lines, in arrival order)

The crc covers everything after itself, so a record torn by a crash (or zero-filled by the file
system) is recognised: readers stop at it, and the writer cuts it off before appending again.

Every stored line has a per-app sequence number, given when it is handed in (on the trio thread)
and contiguous within a record. It is what lets a tail join history and live lines exactly: note
the app's last seq at the moment the tail subscribes, then read history up to that seq.
Seqs go on from the highest one on disk, which the constructor reads (each app's index, and a scan
of its active segment, which also cuts off a torn record): construct the store on a worker thread.

Ingest never waits for the disk: `append` puts lines on a bounded in-memory queue and returns.
The queue holds chunks (one app's lines with consecutive seqs, as handed in together), not lines:
the trio thread does no per-line work here. `run` (a trio task) writes the queue in batches on a
worker thread. A chunk handed in with the LogBatch it came in (`append_app(..., batch=)`) is
stored as that batch's serialization, with no per-line copy. If the queue is full the new
lines are dropped and counted, and once the writer has caught up the stream is told how many.
Queries read the files on a worker thread and merge in what is still queued, so they see every
line handed in before they were called.

Bounds: segments older than `max_age` and, per app, the oldest segments beyond
`max_bytes_per_app` are deleted; queries also hide lines older than `max_age`.
Writes are not fsynced: a crash of the process loses nothing written, a power loss may lose
the last seconds (and leave a torn record, which is skipped).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from waka.controller._logs import LogFilter, SerializedBatch, format_time, now_us
from waka.v1.common_pb2 import LogBatch, LogLine

log = logging.getLogger("waka.controller")

DEFAULT_MAX_AGE = 7 * 24 * 3600.0
DEFAULT_MAX_BYTES_PER_APP = 64 * 1024 * 1024
DEFAULT_MAX_PENDING = 200_000
# A segment holds at most 1/16 of an app's budget, so the size bound deletes in small steps.
SEGMENT_FRACTION = 16
MIN_SEGMENT_BYTES = 64 * 1024
# A segment is sealed once it spans 1/28 of the age bound (6 h of 7 days), so expiry is gradual.
SEGMENT_AGE_FRACTION = 28
# Chunks with consecutive seqs are joined into records of up to this many lines; a chunk that
# came as one agent batch (at most 2000 lines, 1 MB) stays whole.
RECORD_LINES = 1000
SWEEP_INTERVAL = 60.0

HEADER = struct.Struct("<IIQIqq")
_CRC_START = 8  # the crc covers the header from here, and the payload
MAX_PAYLOAD = 64 * 1024 * 1024
_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_SEGMENT_SUFFIX = ".seg"
_INDEX = "index.json"


@dataclass
class Segment:
    """What is known of one segment file without reading it."""

    name: str
    first_seq: int
    last_seq: int
    min_us: int
    max_us: int
    lines: int
    size: int

    def overlaps(self, since_us: int | None, until_us: int | None) -> bool:
        if not self.lines:
            return False
        if since_us is not None and self.max_us < since_us:
            return False
        return until_us is None or self.min_us < until_us


@dataclass(frozen=True)
class Record:
    first_seq: int
    count: int
    min_us: int
    max_us: int
    payload: bytes

    def lines(self) -> list[LogLine]:
        return list(LogBatch.FromString(self.payload).lines)


def encode_record(first_seq: int, count: int, min_us: int, max_us: int, payload: bytes) -> bytes:
    """One record: `payload` is the serialized LogBatch of `count` lines numbered from
    `first_seq`, with times from `min_us` to `max_us`."""
    rest = HEADER.pack(0, 0, first_seq, count, min_us, max_us)[_CRC_START:]
    crc = zlib.crc32(payload, zlib.crc32(rest))
    return struct.pack("<II", len(payload), crc) + rest + payload


def read_records(data: bytes) -> tuple[list[Record], int]:
    """The whole records in `data`, and the length they cover; stops at a torn or bad record."""
    records: list[Record] = []
    offset, total = 0, len(data)
    view = memoryview(data)
    while offset + HEADER.size <= total:
        length, crc, first_seq, count, min_us, max_us = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if length > MAX_PAYLOAD or end > total:
            break
        body = view[offset + _CRC_START : end]
        if zlib.crc32(body) != crc:
            break
        payload = bytes(view[offset + HEADER.size : end])
        records.append(Record(first_seq, count, min_us, max_us, payload))
        offset = end
    return records, offset


def scan_segment(path: Path) -> tuple[Segment, int]:
    """Describes a segment by reading it; also returns the length of its whole records."""
    data = path.read_bytes()
    records, good = read_records(data)
    segment = Segment(path.name, 0, 0, 0, 0, 0, good)
    if records:
        segment.first_seq = records[0].first_seq
        segment.last_seq = records[-1].first_seq + records[-1].count - 1
        segment.min_us = min(r.min_us for r in records)
        segment.max_us = max(r.max_us for r in records)
        segment.lines = sum(r.count for r in records)
    return segment, len(data)


class AppLog:
    """One app's segments on disk. Used only under the store's lock."""

    def __init__(self, directory: Path, segments: list[Segment]) -> None:
        self.directory = directory
        self.segments = segments

    @classmethod
    def load(cls, directory: Path, *, repair: bool) -> AppLog:
        """Reads the index and scans what it does not describe (the active segment, or all of
        them if the index is gone); with `repair`, cuts a torn tail off the last segment."""
        known: dict[str, Segment] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            for entry in json.loads((directory / _INDEX).read_text()):
                segment = Segment(**entry)
                known[segment.name] = segment
        names = sorted(p.name for p in directory.glob(f"*{_SEGMENT_SUFFIX}"))
        segments: list[Segment] = []
        for i, name in enumerate(names):
            path = directory / name
            segment = known.get(name)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if segment is None or segment.size != size or i == len(names) - 1:
                segment, size = scan_segment(path)
                if repair and segment.size < size:
                    log.warning(
                        "cutting a torn record off %s (%d bytes)", path, size - segment.size
                    )
                    with path.open("r+b") as f:
                        f.truncate(segment.size)
            segments.append(segment)
        return cls(directory, segments)

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def last_seq(self) -> int:
        return max((s.last_seq for s in self.segments if s.lines), default=0)

    def save_index(self) -> None:
        """The sealed segments (all but the last); written whole and renamed into place."""
        entries = [asdict(s) for s in self.segments[:-1]]
        tmp = self.directory / (_INDEX + ".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.directory / _INDEX)


@dataclass(frozen=True)
class _Forget:
    app: str


@dataclass(frozen=True)
class _Rename:
    old: str
    new: str


@dataclass(frozen=True)
class _Chunk:
    """Lines of one app handed in together; their seqs run from `first_seq`. `batch`, when
    known, is a LogBatch holding exactly these lines."""

    app: str
    first_seq: int
    lines: Sequence[LogLine]
    batch: SerializedBatch | None = None

    def payload(self) -> bytes:
        return (self.batch or SerializedBatch.of(self.lines)).data()


# Queued lines, or the order to delete or rename an app's history.
_Entry = _Chunk | _Forget | _Rename


@dataclass
class _Loss:
    count: int
    since_us: int


class LogStore:
    def __init__(
        self,
        root: Path,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        max_bytes_per_app: int = DEFAULT_MAX_BYTES_PER_APP,
        clock: Callable[[], float] = time.time,
        max_pending: int = DEFAULT_MAX_PENDING,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        self._root = root
        self._max_age_us = int(max_age * 1_000_000)
        self._max_bytes = max_bytes_per_app
        self._segment_bytes = max(max_bytes_per_app // SEGMENT_FRACTION, MIN_SEGMENT_BYTES)
        self._segment_span_us = self._max_age_us // SEGMENT_AGE_FRACTION
        self._clock = clock
        self._max_pending = max_pending
        self._sweep_interval = sweep_interval
        root.mkdir(parents=True, exist_ok=True)
        # Trio-thread state: the queue, the batch being written, seqs, losses.
        self._pending: list[_Entry] = []
        self._pending_lines = 0
        self._inflight: list[_Entry] = []
        self._next_seq: dict[str, int] = {}
        self._floor: dict[str, int] = {}  # lines of a destroyed app have seqs below this
        self._losses: dict[str, _Loss] = {}
        self._wakeup = trio.Event()
        self._writing = trio.Lock()
        self._closed = False
        self._report: Callable[[str, str], None] = lambda app, text: None
        # Worker-thread state, shared by the writer and readers under the lock.
        self._lock = threading.Lock()
        self._apps: dict[str, AppLog] = {}
        for directory in sorted(root.iterdir()):
            if directory.is_dir() and _APP_NAME.match(directory.name):
                app_log = self._apps[directory.name] = AppLog.load(directory, repair=True)
                self._next_seq[directory.name] = app_log.last_seq + 1

    def report_to(self, emit: Callable[[str, str], None]) -> None:
        """Where to say that lines were lost: `emit(app, text)`, called on the trio thread."""
        self._report = emit

    # ------------------------------------------------------------------ trio thread

    def append(self, lines: Iterable[LogLine]) -> None:
        """Queues lines of any apps for the disk (see `append_app`)."""
        by_app: dict[str, list[LogLine]] = {}
        for line in lines:
            by_app.setdefault(line.app, []).append(line)
        for app, app_lines in by_app.items():
            self.append_app(app, app_lines)

    def append_app(
        self,
        app: str,
        lines: Sequence[LogLine],
        *,
        batch: LogBatch | SerializedBatch | None = None,
    ) -> None:
        """Queues lines of one app for the disk; `batch`, if given, holds exactly these lines.
        Never blocks; what does not fit in the queue is dropped and counted."""
        if self._closed or not lines:
            return
        if isinstance(batch, LogBatch):
            batch = SerializedBatch(batch)
        room = self._max_pending - self._pending_lines
        if room < len(lines):
            self._lose(app, len(lines) - max(room, 0))
            if room <= 0:
                return
            lines, batch = lines[:room], None
        seq = self._next_seq.get(app, 1)
        self._next_seq[app] = seq + len(lines)
        self._pending.append(_Chunk(app, seq, lines, batch))
        self._pending_lines += len(lines)
        self._wakeup.set()

    def forget(self, app: str) -> None:
        """Deletes an app's history (the app was destroyed); later lines start a new one."""
        self._floor[app] = self._next_seq.get(app, 1)
        self._pending = [e for e in self._pending if not isinstance(e, _Chunk) or e.app != app]
        self._pending_lines = sum(len(e.lines) for e in self._pending if isinstance(e, _Chunk))
        self._pending.append(_Forget(app))
        self._losses.pop(app, None)
        self._wakeup.set()

    def rename(self, old: str, new: str) -> None:
        """The app `old` is called `new` from now on, its history and seqs included. Lines
        handed in under `new` go on from the last seq of `old`; `old` starts afresh."""
        for names in (self._next_seq, self._floor, self._losses):
            names.pop(new, None)
            if old in names:
                names[new] = names.pop(old)  # type: ignore[index]
        self._pending.append(_Rename(old, new))
        self._wakeup.set()

    def mark(self, app: str) -> int:
        """The seq of the last line handed in for `app`: a query up to it sees exactly the lines
        handed in before this call."""
        return self._next_seq.get(app, 1) - 1

    async def query(
        self,
        app: str,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        log_filter: LogFilter | None = None,
        limit: int = 1500,
        upto_seq: int | None = None,
    ) -> list[LogLine]:
        """The last `limit` lines of `app` with since_us <= time_us < until_us that pass the
        filter, oldest first (in the order they arrived). Sees every line handed in before the
        call (or up to `upto_seq`, a `mark()`), whether it is on disk yet or not."""
        if limit <= 0 or not _APP_NAME.match(app):
            return []
        # Taken before the first checkpoint, so it is consistent with the seqs given out so far.
        upto = self.mark(app) if upto_seq is None else upto_seq
        # Copied here (a fast list copy), filtered on the worker thread.
        queued = self._inflight + self._pending
        floor = self._floor.get(app, 0)
        oldest_us = now_us(self._clock) - self._max_age_us
        since = oldest_us if since_us is None else max(since_us, oldest_us)
        window = _Window(since, until_us, log_filter or LogFilter(), floor, upto)
        return await trio.to_thread.run_sync(self._read, app, window, queued, limit)

    async def recent(self, per_app: int) -> dict[str, list[LogLine]]:
        """The last `per_app` lines of every app on disk (to refill the hub's history after a
        restart)."""
        return await trio.to_thread.run_sync(self._read_recent, per_app)

    async def stream_offsets(self, per_app: int) -> dict[str, int]:
        """The highest file offset of each dyno output stream among the last `per_app` lines of
        every app on disk: what was stored, whatever cursors a crash kept from being committed."""

        def read() -> dict[str, int]:
            offsets: dict[str, int] = {}
            for lines in self._read_recent(per_app).values():
                for line in lines:
                    if line.stream and line.offset > offsets.get(line.stream, 0):
                        offsets[line.stream] = line.offset
            return offsets

        return await trio.to_thread.run_sync(read)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: moves queued lines to disk in batches, on a worker thread, until
        cancelled. Also deletes what is past the bounds, every `sweep_interval`."""
        task_status.started()
        next_sweep = trio.current_time()
        while True:
            if trio.current_time() >= next_sweep:
                await trio.to_thread.run_sync(self._sweep)
                next_sweep = trio.current_time() + self._sweep_interval
            with trio.move_on_at(next_sweep):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self._write_pending()

    async def flush(self) -> None:
        """Returns once every line handed in before the call is on disk (or counted as lost)."""
        await self._write_pending()

    async def aclose(self) -> None:
        """Stops taking lines and writes what is queued (call at shutdown)."""
        self._closed = True
        await self._write_pending()

    def close(self) -> None:
        """Like `aclose`, blocking; for use outside trio, once nothing else uses the store."""
        self._closed = True
        entries, self._pending, self._pending_lines = self._pending, [], 0
        self._write(entries)

    # ------------------------------------------------------------------ writer

    async def _write_pending(self) -> None:
        # One batch at a time: whoever waits here writes after the batch in flight is stored.
        async with self._writing:
            if not self._pending:
                return
            entries, self._pending, self._pending_lines = self._pending, [], 0
            self._inflight = entries
            try:
                failed = await trio.to_thread.run_sync(self._write, entries)
            finally:
                self._inflight = []
        for app, count in failed.items():
            self._lose(app, count)
        self._report_losses()

    def _lose(self, app: str, count: int) -> None:
        loss = self._losses.get(app)
        if loss is None:
            self._losses[app] = _Loss(count, now_us(self._clock))
        else:
            loss.count += count

    def _report_losses(self) -> None:
        """Says in each app's stream how many lines never reached the disk, once there is room
        again (the report itself is a line, and will be stored)."""
        if self._pending_lines >= self._max_pending // 2:
            return
        losses, self._losses = self._losses, {}
        for app, loss in losses.items():
            self._report(
                app,
                f"Warning: {loss.count} messages were not stored in the log history since "
                f"{format_time(loss.since_us)} (the disk fell behind).",
            )

    def _write(self, entries: list[_Entry]) -> dict[str, int]:
        """Appends entries to their apps' segments; returns how many lines failed, per app."""
        failed: dict[str, int] = {}
        run: dict[str, list[_Chunk]] = {}
        for entry in entries:
            if isinstance(entry, _Chunk):
                run.setdefault(entry.app, []).append(entry)
                continue
            self._flush_runs(run, failed)
            run = {}
            if isinstance(entry, _Forget):
                self._delete_app(entry.app)
            else:
                self._rename_app(entry.old, entry.new)
        self._flush_runs(run, failed)
        return failed

    def _flush_runs(self, runs: dict[str, list[_Chunk]], failed: dict[str, int]) -> None:
        for app, chunks in runs.items():
            if not _APP_NAME.match(app):
                lines = sum(len(chunk.lines) for chunk in chunks)
                log.warning("not storing %d lines of an app named %r", lines, app)
                continue
            try:
                self._append_app(app, chunks)
            except OSError as error:
                log.error("cannot store the log history of %s: %s", app, error)
                failed[app] = failed.get(app, 0) + sum(len(chunk.lines) for chunk in chunks)

    def _append_app(self, app: str, chunks: list[_Chunk]) -> None:
        with self._lock:
            app_log = self._app_log(app, create=True)
            assert app_log is not None
            now = now_us(self._clock)
            for group in _records(chunks):
                times = [line.time_us for chunk in group for line in chunk.lines]
                # Serialized LogBatches concatenate into the LogBatch of all their lines.
                payload = b"".join(chunk.payload() for chunk in group)
                self._write_record(
                    app_log, group[0].first_seq, len(times), min(times), max(times), payload, now
                )
            self._enforce_size(app_log)

    def _write_record(
        self,
        app_log: AppLog,
        first_seq: int,
        count: int,
        min_us: int,
        max_us: int,
        payload: bytes,
        now: int,
    ) -> None:
        record = encode_record(first_seq, count, min_us, max_us, payload)
        active = app_log.segments[-1] if app_log.segments else None
        if active is None or (
            active.lines
            and (
                active.size + len(record) > self._segment_bytes
                or now - active.min_us > self._segment_span_us
            )
        ):
            active = Segment(f"{first_seq:020d}{_SEGMENT_SUFFIX}", first_seq, 0, 0, 0, 0, 0)
            app_log.segments.append(active)
            if len(app_log.segments) > 1:
                app_log.save_index()
        with (app_log.directory / active.name).open("ab") as f:
            f.write(record)
        if not active.lines:
            active.first_seq, active.min_us, active.max_us = first_seq, min_us, max_us
        active.min_us = min(active.min_us, min_us)
        active.max_us = max(active.max_us, max_us)
        active.last_seq = first_seq + count - 1
        active.lines += count
        active.size += len(record)

    def _enforce_size(self, app_log: AppLog) -> None:
        removed = False
        while len(app_log.segments) > 1 and app_log.total_bytes > self._max_bytes:
            oldest = app_log.segments.pop(0)
            (app_log.directory / oldest.name).unlink(missing_ok=True)
            removed = True
        if removed:
            app_log.save_index()

    def _sweep(self) -> None:
        """Deletes every segment whose newest line is past the age bound, in every app."""
        cutoff = now_us(self._clock) - self._max_age_us
        for directory in sorted(self._root.iterdir()):
            if not directory.is_dir() or not _APP_NAME.match(directory.name):
                continue
            with self._lock:
                app_log = self._app_log(directory.name, create=False)
                if app_log is None:
                    continue
                expired = [s for s in app_log.segments if s.lines and s.max_us < cutoff]
                for segment in expired:
                    (app_log.directory / segment.name).unlink(missing_ok=True)
                    app_log.segments.remove(segment)
                if expired:
                    app_log.save_index()

    def _delete_app(self, app: str) -> None:
        with self._lock:
            self._apps.pop(app, None)
            if _APP_NAME.match(app):
                shutil.rmtree(self._root / app, ignore_errors=True)

    def _rename_app(self, old: str, new: str) -> None:
        if not (_APP_NAME.match(old) and _APP_NAME.match(new)):
            return
        with self._lock:
            self._apps.pop(new, None)
            target = self._root / new
            # What an earlier app of that name left (its deletion is queued before this).
            shutil.rmtree(target, ignore_errors=True)
            app_log = self._apps.pop(old, None)
            source = self._root / old
            try:
                source.rename(target)
            except FileNotFoundError:
                return  # no history yet
            except OSError as error:
                log.error("cannot move the log history of %s to %s: %s", old, new, error)
                return
            if app_log is not None:
                app_log.directory = target
                self._apps[new] = app_log

    def _app_log(self, app: str, *, create: bool) -> AppLog | None:
        """The app's segments, loaded on first use. Callers hold the lock."""
        app_log = self._apps.get(app)
        if app_log is None:
            directory = self._root / app
            if not directory.is_dir():
                if not create:
                    return None
                directory.mkdir(parents=True, exist_ok=True)
            # Only the writer repairs: a reader must not cut a record being appended.
            app_log = self._apps[app] = AppLog.load(directory, repair=create)
        return app_log

    # ------------------------------------------------------------------ readers

    def _segments_of(self, app: str) -> tuple[Path, list[Segment]]:
        with self._lock:
            app_log = self._app_log(app, create=False)
            if app_log is None:
                return self._root / app, []
            return app_log.directory, [Segment(**asdict(s)) for s in app_log.segments]

    def _read(self, app: str, window: _Window, entries: list[_Entry], limit: int) -> list[LogLine]:
        queued = [e for e in entries if isinstance(e, _Chunk) and e.app == app]
        # Lines still queued are not read from disk even if the writer has stored them since.
        disk_upto = min(window.upto, queued[0].first_seq - 1) if queued else window.upto
        newest_first: list[LogLine] = []
        for chunk in reversed(queued):
            if len(newest_first) >= limit:
                break
            for seq, line in reversed(list(enumerate(chunk.lines, start=chunk.first_seq))):
                if window.admits(seq, line) and len(newest_first) < limit:
                    newest_first.append(line)
        directory, segments = self._segments_of(app)
        for segment in reversed(segments):
            if len(newest_first) >= limit:
                break
            if segment.first_seq > disk_upto or not window.overlaps(segment):
                continue
            for record in reversed(_records_of(directory / segment.name)):
                if len(newest_first) >= limit:
                    break
                if record.first_seq > disk_upto or not window.overlaps_record(record):
                    continue
                lines = record.lines()
                for k in range(len(lines) - 1, -1, -1):
                    seq = record.first_seq + k
                    if seq <= disk_upto and window.admits(seq, lines[k]):
                        newest_first.append(lines[k])
                        if len(newest_first) >= limit:
                            break
        newest_first.reverse()
        return newest_first

    def _read_recent(self, per_app: int) -> dict[str, list[LogLine]]:
        found: dict[str, list[LogLine]] = {}
        oldest_us = now_us(self._clock) - self._max_age_us
        for directory in sorted(self._root.iterdir()):
            app = directory.name
            if not directory.is_dir() or not _APP_NAME.match(app):
                continue
            path, segments = self._segments_of(app)
            last_seq = max((s.last_seq for s in segments if s.lines), default=0)
            window = _Window(oldest_us, None, LogFilter(), 0, last_seq)
            newest_first: list[LogLine] = []
            for segment in reversed(segments):
                for record in reversed(_records_of(path / segment.name)):
                    newest_first.extend(
                        line for line in reversed(record.lines()) if window.admits_time(line)
                    )
                    if len(newest_first) >= per_app:
                        break
                if len(newest_first) >= per_app:
                    break
            if newest_first:
                found[app] = newest_first[:per_app][::-1]
        return found


@dataclass(frozen=True)
class _Window:
    since_us: int | None
    until_us: int | None
    log_filter: LogFilter
    floor: int
    upto: int

    def overlaps(self, segment: Segment) -> bool:
        return segment.last_seq >= self.floor and segment.overlaps(self.since_us, self.until_us)

    def overlaps_record(self, record: Record) -> bool:
        if record.first_seq + record.count - 1 < self.floor:
            return False
        if self.since_us is not None and record.max_us < self.since_us:
            return False
        return self.until_us is None or record.min_us < self.until_us

    def admits_time(self, line: LogLine) -> bool:
        if self.since_us is not None and line.time_us < self.since_us:
            return False
        return self.until_us is None or line.time_us < self.until_us

    def admits(self, seq: int, line: LogLine) -> bool:
        return (
            self.floor <= seq <= self.upto
            and self.admits_time(line)
            and self.log_filter.matches(line)
        )


def _records(chunks: list[_Chunk]) -> Iterator[list[_Chunk]]:
    """The chunks (of one app, in seq order) grouped into records: runs of consecutive seqs (a
    forgotten app's lines leave gaps) of at most RECORD_LINES lines, except that a longer chunk
    that came as one batch stays whole, and a longer one that did not is cut."""
    group: list[_Chunk] = []
    size = 0
    for chunk in chunks:
        if len(chunk.lines) > RECORD_LINES and chunk.batch is None:
            if group:
                yield group
            group, size = [], 0
            for start in range(0, len(chunk.lines), RECORD_LINES):
                part = chunk.lines[start : start + RECORD_LINES]
                yield [_Chunk(chunk.app, chunk.first_seq + start, part)]
            continue
        follows = group and group[-1].first_seq + len(group[-1].lines) == chunk.first_seq
        if group and (not follows or size + len(chunk.lines) > RECORD_LINES):
            yield group
            group, size = [], 0
        group.append(chunk)
        size += len(chunk.lines)
    if group:
        yield group


def _records_of(path: Path) -> list[Record]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # deleted by the size or age bound while we looked
        return []
    return read_records(data)[0]


def iter_segment_lines(path: Path) -> Iterator[tuple[int, LogLine]]:
    """Every (seq, line) of one segment file, in order (for tools and tests)."""
    for record in _records_of(path):
        for k, line in enumerate(record.lines()):
            yield record.first_seq + k, line
