"""Reclaiming disk: slugs and sources that no kept release or recent build needs.

Each app keeps the slugs of its newest releases (10 by default, so that many rollbacks stay
possible) and of its current release; a build's source and slug are kept for a day so a build in
progress or just finished is never collected under it. Everything else goes, on the controller and
(by message) on every node, and the controller says what it reclaimed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio
from sqlite_utils import Database

from waka.controller._blobs import BlobStore
from waka.controller._fleet import Fleet
from waka.controller._store import Store
from waka.v1.agent_pb2 import CollectGarbage, ControllerMessage
from waka.v1.platform_pb2 import GarbageReport

log = logging.getLogger("waka.controller")

KEEP_RELEASES = 10
RECENT = 24 * 60 * 60
# Files younger than this are never collected: an upload may be finishing.
MIN_AGE = 10 * 60
INTERVAL = 60 * 60
STREAM_CURSOR_AGE = 7 * 24 * 60 * 60


@dataclass(frozen=True)
class Keep:
    slugs: frozenset[str]
    sources: frozenset[str]
    apps: tuple[str, ...]


def _wanted(db: Database, keep_releases: int, since: float) -> Keep:
    slugs = {
        r[0]
        for r in db.execute(
            "SELECT slug_sha256 FROM (SELECT r.slug_sha256, ROW_NUMBER() OVER"
            " (PARTITION BY r.app_id ORDER BY r.version DESC) AS n, a.current_release,"
            " r.version FROM releases r JOIN apps a ON a.id = r.app_id)"
            " WHERE slug_sha256 IS NOT NULL AND (n <= ? OR version = current_release)",
            (keep_releases,),
        )
    }
    slugs |= {
        r[0]
        for r in db.execute(
            "SELECT slug_sha256 FROM builds WHERE slug_sha256 IS NOT NULL AND created_at >= ?",
            (since,),
        )
    }
    # Whatever release a dyno runs (an old one, while a new one crashes at boot), its slug stays.
    slugs |= {
        r[0]
        for r in db.execute(
            "SELECT DISTINCT r.slug_sha256 FROM dynos d JOIN releases r ON r.app_id = d.app_id"
            " AND r.version = d.release_version WHERE r.slug_sha256 IS NOT NULL"
        )
    }
    sources = {
        r[0] for r in db.execute("SELECT source_sha256 FROM builds WHERE created_at >= ?", (since,))
    }
    apps = tuple(r[0] for r in db.execute("SELECT name FROM apps ORDER BY name"))
    return Keep(frozenset(slugs), frozenset(sources), apps)


def _sweep(store: BlobStore, keep: frozenset[str], now: float, min_age: float) -> tuple[int, int]:
    removed = size = 0
    for path in store.root.iterdir():
        if not path.is_file():
            continue
        sha = path.name.split(".", 1)[0]
        stat = path.stat()
        if sha in keep or now - stat.st_mtime < min_age:
            continue
        path.unlink(missing_ok=True)
        removed += 1
        size += stat.st_size
    return removed, size


class Collector:
    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        *,
        slugs: BlobStore,
        sources: BlobStore,
        keep_releases: int = KEEP_RELEASES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._fleet = fleet
        self._slugs = slugs
        self._sources = sources
        self.keep_releases = keep_releases
        self._clock = clock
        # Sources of builds in progress, never collected (set by the deployer's owner).
        self.building: Callable[[], frozenset[str]] = frozenset

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(INTERVAL)
            await self.collect()

    async def collect(self, *, immediate: bool = False) -> GarbageReport:
        now = self._clock()
        recent, min_age = (0.0, 0.0) if immediate else (RECENT, MIN_AGE)
        keep = await self._store.read(lambda db: _wanted(db, self.keep_releases, now - recent))
        slugs, slug_bytes = await trio.to_thread.run_sync(
            _sweep, self._slugs, keep.slugs, now, min_age
        )
        sources, source_bytes = await trio.to_thread.run_sync(
            _sweep, self._sources, keep.sources | self.building(), now, min_age
        )
        # Replay cursors of dyno output streams that have been quiet for a week.
        await self._store.write(
            lambda db: db.execute(
                "DELETE FROM log_streams WHERE updated_at < ?", (now - STREAM_CURSOR_AGE,)
            )
        )
        message = ControllerMessage(
            collect_garbage=CollectGarbage(keep_slugs=sorted(keep.slugs), apps=keep.apps)
        )
        for session in self._fleet.sessions():
            session.send(message)
        if slugs or sources:
            log.info(
                "collected %d slugs (%.1f MB) and %d sources (%.1f MB)",
                slugs,
                slug_bytes / 1e6,
                sources,
                source_bytes / 1e6,
            )
        return GarbageReport(
            slugs_removed=slugs,
            slug_bytes=slug_bytes,
            sources_removed=sources,
            source_bytes=source_bytes,
            releases_kept=self.keep_releases,
        )
