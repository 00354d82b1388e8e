"""Follow a dyno's growing output file and hand out its complete lines.

A dyno writes stdout+stderr to a regular file opened O_APPEND (not a pipe), so the dyno does not
depend on the agent: a restarted agent resumes from the byte offset it saved, losing and
repeating nothing. Shipped ranges are given back to the filesystem with fallocate(PUNCH_HOLE):
the file's logical size keeps growing but its disk usage does not.

One `FileWatcher` (a single inotify fd) wakes the followers of hundreds of files within
milliseconds of a write; a slow periodic re-check stays as a safety net for missed events.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import AsyncIterator, Callable
from itertools import accumulate
from pathlib import Path
from typing import Final

import trio

MAX_LINE: Final = 10_000  # Heroku splits longer lines into chunks of this many bytes
RECHECK_INTERVAL: Final = 1.0  # seconds; the safety net under inotify
WATCH_LINGER: Final = 0.010  # seconds between reads of inotify events (see FileWatcher.run)
READ_SIZE: Final = 256 * 1024  # bytes per read: big enough for >100k lines/s, small per batch

_IN_MODIFY: Final = 0x00000002
_IN_Q_OVERFLOW: Final = 0x00004000
_IN_IGNORED: Final = 0x00008000
_IN_NONBLOCK: Final = os.O_NONBLOCK
_IN_CLOEXEC: Final = os.O_CLOEXEC
_EVENT_HEADER: Final = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len

_ONE: Final = 1  # `map(_ONE.__add__, sizes)`: each line's size with its newline, in C

_FALLOC_FL_KEEP_SIZE: Final = 0x01
_FALLOC_FL_PUNCH_HOLE: Final = 0x02

_libc = ctypes.CDLL(None, use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.fallocate64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _ignore(_message: str) -> None:
    pass


class FileWatch:
    """One watched file; `changed()` gives an event set by the next write after the call."""

    def __init__(self, path: Path, wd: int | None) -> None:
        self.path = path
        self.wd = wd  # None: inotify refused the watch; followers rely on the periodic re-check
        self.users = 1
        self._event = trio.Event()

    def changed(self) -> trio.Event:
        return self._event

    def _notify(self) -> None:
        event, self._event = self._event, trio.Event()
        event.set()


class FileWatcher:
    """One inotify instance shared by every follower of the agent.

    Run it with `open_file_watcher()` (or start `run()` in a nursery yourself); without it
    running, followers still work, but only at the pace of their periodic re-check.
    """

    def __init__(self, *, log: Callable[[str], None] = _ignore) -> None:
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"cannot create an inotify instance: {os.strerror(code)}")
        self._fd = fd
        self._log = log
        self._by_wd: dict[int, FileWatch] = {}
        self._unwatched: dict[Path, FileWatch] = {}
        self._said_watch_refused = False

    def watch(self, path: Path) -> FileWatch:
        """Start (or share) the watch of path; pair with unwatch()."""
        wd = _libc.inotify_add_watch(self._fd, bytes(path), _IN_MODIFY)
        if wd < 0:
            return self._watch_without_inotify(path, ctypes.get_errno())
        existing = self._by_wd.get(wd)
        if existing is not None:  # same inode as another follower's file: share its wd
            existing.users += 1
            return existing
        watch = FileWatch(path, wd)
        self._by_wd[wd] = watch
        return watch

    def unwatch(self, watch: FileWatch) -> None:
        watch.users -= 1
        if watch.users > 0:
            return
        if watch.wd is None:
            self._unwatched.pop(watch.path, None)
        elif self._by_wd.pop(watch.wd, None) is not None:
            # EINVAL: the kernel already dropped it (file deleted); nothing left to remove.
            _libc.inotify_rm_watch(self._fd, watch.wd)

    async def run(self) -> None:
        """Read inotify events forever and wake the followers of the files that changed."""
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                continue
            self._dispatch(data)
            # The kernel merges repeated events of a file while they wait unread, so pausing
            # here turns a dyno's thousand small writes a second into at most a hundred wakeups
            # and reads, each of many lines: per read the platform costs far more than per line.
            await trio.sleep(WATCH_LINGER)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _dispatch(self, data: bytes) -> None:
        position = 0
        while position < len(data):
            wd, mask, _cookie, name_length = _EVENT_HEADER.unpack_from(data, position)
            position += _EVENT_HEADER.size + name_length
            if mask & _IN_Q_OVERFLOW:  # events were lost: wake everyone to re-check
                for watch in self._by_wd.values():
                    watch._notify()
                continue
            watch = self._by_wd.get(wd)
            if watch is None:
                continue
            if mask & _IN_IGNORED:  # file gone: the wd is dead, wake the follower once more
                del self._by_wd[wd]
                watch.wd = None
            watch._notify()

    def _watch_without_inotify(self, path: Path, code: int) -> FileWatch:
        if not self._said_watch_refused:
            self._said_watch_refused = True
            hint = " (raise fs.inotify.max_user_watches)" if code == errno.ENOSPC else ""
            self._log(
                f"cannot watch {path} with inotify: {os.strerror(code)}{hint}; output of this"
                f" and further such files is picked up every {RECHECK_INTERVAL:g} s instead"
            )
        existing = self._unwatched.get(path)
        if existing is not None:
            existing.users += 1
            return existing
        watch = FileWatch(path, None)
        self._unwatched[path] = watch
        return watch


@contextlib.asynccontextmanager
async def open_file_watcher(*, log: Callable[[str], None] = _ignore) -> AsyncIterator[FileWatcher]:
    """A running FileWatcher for the duration of the block."""
    watcher = FileWatcher(log=log)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher.run)
            try:
                yield watcher
            finally:
                nursery.cancel_scope.cancel()
    finally:
        watcher.close()


class OutputFollower:
    """Reads complete lines from a growing file, from a byte offset that survives restarts.

    Lines are decoded as UTF-8 (invalid bytes replaced) without their newline. A line longer
    than max_line bytes is handed out in chunks of at most max_line bytes, as Heroku does; a
    chunk boundary is moved back (by at most 3 bytes) rather than cut a UTF-8 character in two.
    """

    _said_punch_unsupported = False  # once per agent, not per dyno

    def __init__(
        self,
        path: Path,
        offset: int = 0,
        *,
        max_line: int = MAX_LINE,
        watcher: FileWatcher,
        recheck_interval: float = RECHECK_INTERVAL,
        read_size: int = READ_SIZE,
        log: Callable[[str], None] = _ignore,
    ) -> None:
        if max_line < 4:
            raise ValueError(f"max_line must be at least 4 bytes (one UTF-8 character): {max_line}")
        # Read-write: fallocate(PUNCH_HOLE) needs a writable fd. We never write.
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self.path = path
        self._max_line = max_line
        self._watcher = watcher
        self._watch = watcher.watch(path)
        self._recheck_interval = recheck_interval
        self._read_size = read_size
        self._log = log
        self._block_size = os.fstat(self._fd).st_blksize
        self._pending = b""  # bytes of the line not yet complete
        # End offset in the file of each line the last read handed out.
        self.ends: list[int] = []
        self._read_offset = offset  # file position just after _pending
        self._released = 0
        self._can_punch = True

    @property
    def offset(self) -> int:
        """Byte offset just after the last line handed out (what to save for a restart)."""
        return self._read_offset - len(self._pending)

    async def read_lines(self) -> tuple[list[str], int]:
        """Wait until at least one complete line (or a max_line chunk) is there; return every
        line available now and the offset just after them."""
        while True:
            # Take the event before reading: a write landing after the read still sets it.
            changed = self._watch.changed()
            await trio.lowlevel.checkpoint_if_cancelled()
            chunk = self._read_available()
            lines = self._take_lines(chunk)
            if lines:
                # Lines taken are owed to the caller: a cancellation here must not drop them.
                await trio.lowlevel.cancel_shielded_checkpoint()
                return lines, self.offset
            if chunk:  # part of a line: the rest may already be there
                await trio.lowlevel.checkpoint()
                continue
            with trio.move_on_after(self._recheck_interval):
                await changed.wait()

    def flush_partial(self) -> list[str]:
        """For a process that has exited: every remaining line, including an unterminated last
        one. Reads to the end of the file first, so lines written just before exit are not lost.
        """
        lines: list[str] = []
        ends: list[int] = []
        while chunk := self._read_available():
            lines += self._take_lines(chunk)
            ends += self.ends
        if self._pending:
            lines.append(self._pending.decode("utf-8", "replace"))
            ends.append(self._read_offset)
            self._pending = b""
        self.ends = ends
        return lines

    def release(self, offset: int) -> None:
        """Punch out the bytes before offset (already shipped) so they stop using disk."""
        if offset > self.offset:
            raise ValueError(f"cannot release up to {offset}: only {self.offset} bytes were read")
        end = offset - offset % self._block_size  # whole blocks only: partial ones free nothing
        if end <= self._released or not self._can_punch:
            return
        mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
        if _libc.fallocate64(self._fd, mode, self._released, end - self._released) != 0:
            code = ctypes.get_errno()
            if code not in (errno.EOPNOTSUPP, errno.ENOSYS):
                raise OSError(code, f"releasing shipped output of {self.path}: {os.strerror(code)}")
            self._can_punch = False
            if not OutputFollower._said_punch_unsupported:
                OutputFollower._said_punch_unsupported = True
                self._log(
                    f"the filesystem of {self.path} cannot punch holes; dyno output files will"
                    " keep their full size on disk until the dyno's instance is removed"
                )
            return
        self._released = end

    def close(self) -> None:
        if self._fd >= 0:
            self._watcher.unwatch(self._watch)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> OutputFollower:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _read_available(self) -> bytes:
        # A plain pread on the event loop: the file is local and freshly written, so this is a
        # page-cache copy (~tens of µs per chunk); a thread hop per read would cost more.
        # Sized by fstat first: a pread into a READ_SIZE buffer costs a large allocation each
        # time, five times the cost of both calls for the few lines a dyno usually has written.
        available = os.fstat(self._fd).st_size - self._read_offset
        if available <= 0:
            return b""
        chunk = os.pread(self._fd, min(available, self._read_size), self._read_offset)
        self._read_offset += len(chunk)
        return chunk

    def _take_lines(self, chunk: bytes) -> list[str]:
        """Complete lines from pending + chunk; `ends` gets each line's end offset in the file
        (the stable identity of a line, used to drop replays after an agent restart)."""
        self.ends = []
        if not chunk:
            return []
        data = self._pending + chunk if self._pending else chunk
        base = self._read_offset - len(data)
        end = data.rfind(b"\n")
        lines: list[str] = []
        ends: list[int] = []
        if end >= 0:
            head = data[:end]
            parts = head.split(b"\n")
            sizes = list(map(len, parts))
            if max(sizes) <= self._max_line:
                # The usual case, with no per-line Python code: ends are the running sum of
                # the line sizes plus newlines; ASCII (most logs) decodes and splits as a whole.
                ends = list(accumulate(map(_ONE.__add__, sizes), initial=base))[1:]
                if head.isascii():
                    lines = head.decode("ascii").split("\n")
                else:
                    lines = [part.decode("utf-8", "replace") for part in parts]
            else:
                position = base
                for part in parts:
                    position += len(part) + 1
                    if len(part) > self._max_line:
                        piece_end = position - 1 - len(part)
                        for piece, size in self._split_long(part):
                            piece_end += size
                            lines.append(piece)
                            ends.append(piece_end)
                        ends[-1] = position  # the last piece ends with the line's newline
                    else:
                        lines.append(part.decode("utf-8", "replace"))
                        ends.append(position)
            data = data[end + 1 :]
            base += end + 1
        while len(data) > self._max_line:  # an over-long line still being written
            cut = self._cut_point(data)
            lines.append(data[:cut].decode("utf-8", "replace"))
            base += cut
            ends.append(base)
            data = data[cut:]
        self._pending = data
        self.ends = ends
        return lines

    def _split_long(self, line: bytes) -> list[tuple[str, int]]:
        """The pieces of an over-long line, each with its size in bytes."""
        chunks = []
        while len(line) > self._max_line:
            cut = self._cut_point(line)
            chunks.append((line[:cut].decode("utf-8", "replace"), cut))
            line = line[cut:]
        chunks.append((line.decode("utf-8", "replace"), len(line)))
        return chunks

    def _cut_point(self, data: bytes) -> int:
        """max_line, moved back to the start of a UTF-8 character if it would split one."""
        cut = self._max_line
        for candidate in range(cut, cut - 4, -1):
            if data[candidate] & 0xC0 != 0x80:  # not a continuation byte: a character starts
                return candidate
        return cut  # not UTF-8 anyway: cut where Heroku would
