"""Apps' log drains as users manage them: stored in SQLite, run by `Drains`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from sqlite_utils import Database

from waka.controller._apps import find_app
from waka.controller._drain_url import Drain, check_drain_count, new_drain_token, parse_drain_url
from waka.controller._drains import Drains
from waka.controller._errors import AlreadyExists, NotFound
from waka.controller._logs import LogHub
from waka.controller._store import Store
from waka.v1.platform_pb2 import LogDrain


class LogDrains:
    def __init__(
        self,
        store: Store,
        drains: Drains,
        hub: LogHub,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._drains = drains
        self._hub = hub
        self._clock = clock

    async def load(self) -> None:
        """Starts every stored drain (at controller start)."""
        rows = await self._store.read(
            lambda db: db.execute(
                "SELECT a.name, d.id, d.url, d.token FROM log_drains d"
                " JOIN apps a ON a.id = d.app_id ORDER BY a.name, d.created_at"
            ).fetchall()
        )
        by_app: dict[str, list[Drain]] = {}
        for app, drain_id, url, token in rows:
            by_app.setdefault(app, []).append(Drain(drain_id, url, token))
        for app, drains in by_app.items():
            self._drains.set_drains(app, drains)

    async def _apply(self, app: str) -> None:
        rows = await self._store.read(
            lambda db: db.execute(
                "SELECT d.id, d.url, d.token FROM log_drains d JOIN apps a ON a.id = d.app_id"
                " WHERE a.name = ? ORDER BY d.created_at",
                (app,),
            ).fetchall()
        )
        self._drains.set_drains(app, [Drain(*row) for row in rows])

    async def list(self, app: str) -> list[LogDrain]:
        await self._store.read(lambda db: find_app(db, app))
        return [
            LogDrain(
                id=info.id,
                url=parse_drain_url(info.url).redacted(),
                token=info.token,
                buffered=info.buffered,
                delivered=info.delivered,
                dropped=info.dropped,
                last_error=info.last_error,
            )
            for info in self._drains.info(app)
        ]

    async def add(self, app: str, url: str, user: str) -> LogDrain:
        target = parse_drain_url(url.strip())
        drain = Drain(uuid.uuid4().hex, url.strip(), new_drain_token())
        now = self._clock()

        def insert(db: Database) -> None:
            record = find_app(db, app)
            (count,) = db.execute(
                "SELECT COUNT(*) FROM log_drains WHERE app_id = ?", (record.id,)
            ).fetchone()
            check_drain_count(count)
            if db.execute(
                "SELECT 1 FROM log_drains WHERE app_id = ? AND url = ?", (record.id, drain.url)
            ).fetchone():
                raise AlreadyExists(f"{target.redacted()} is already a drain of {app}.")
            db.execute(
                "INSERT INTO log_drains (id, app_id, url, token, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (drain.id, record.id, drain.url, drain.token, now),
            )

        await self._store.write(insert)
        await self._apply(app)
        self._hub.emit(app, f"Add drain {target.redacted()} by {user}")
        return LogDrain(id=drain.id, url=target.redacted(), token=drain.token)

    async def remove(self, app: str, url_or_token: str, user: str) -> None:
        key = url_or_token.strip()

        def delete(db: Database) -> str:
            record = find_app(db, app)
            row = db.execute(
                "SELECT id, url FROM log_drains WHERE app_id = ? AND (url = ? OR token = ?)",
                (record.id, key, key),
            ).fetchone()
            if row is None:
                raise NotFound(f"{app} has no drain {key!r}; `waka drains` lists them.")
            db.execute("DELETE FROM log_drains WHERE id = ?", (row[0],))
            return str(row[1])

        url = await self._store.write(delete)
        await self._apply(app)
        self._hub.emit(app, f"Remove drain {parse_drain_url(url).redacted()} by {user}")

    async def renamed(self, old: str, new: str) -> None:
        """The app's drains go on under its new name (lines carry the name they go under)."""
        self.forget(old)
        await self._apply(new)

    def forget(self, app: str) -> None:
        self._drains.set_drains(app, [])
