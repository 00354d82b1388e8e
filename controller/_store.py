"""The controller's SQLite store: one connection, one writer at a time, every write unit immediate.

SQLite in WAL mode has a trap: a deferred transaction that reads and then writes gets SQLITE_BUSY
without the busy handler ever running. So every write unit here opens with `BEGIN IMMEDIATE`, and
all access goes through one connection serialised by a trio CapacityLimiter, in a worker thread
so the event loop never waits on the disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlite_utils
import trio

from waka.controller._schema import MIGRATIONS

T = TypeVar("T")


class Store:
    def __init__(self, db: sqlite_utils.Database, path: Path) -> None:
        self._db = db
        self.path = path
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    def open(cls, path: Path) -> Store:
        """Opens (creating if needed) the database and applies pending migrations."""
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves, always IMMEDIATE.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        db = sqlite_utils.Database(conn)
        db.enable_wal()
        conn.execute("PRAGMA foreign_keys=ON")
        # Safe in WAL mode; trades only the last transactions on power loss for far fewer fsyncs.
        conn.execute("PRAGMA synchronous=NORMAL")
        MIGRATIONS.apply(db)
        return cls(db, path)

    async def read(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        return await trio.to_thread.run_sync(fn, self._db, limiter=self._limiter)

    async def write(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """Runs fn in one IMMEDIATE transaction: all of it is stored, or none of it."""
        return await trio.to_thread.run_sync(self.write_now, fn, limiter=self._limiter)

    def write_now(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        """The synchronous form of write(), for start-up code that runs before the event loop."""
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self._db)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def read_now(self, fn: Callable[[sqlite_utils.Database], T]) -> T:
        return fn(self._db)

    def close(self) -> None:
        conn = self._db.conn
        # Folds the WAL back into the main file so a clean stop leaves one self-contained file.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
