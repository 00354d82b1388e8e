"""Backups of add-ons (`waka pg:backups`): captured by the provider into the controller's storage,
numbered b001, b002, ... across the controller, restored by the provider.

A backup file is written under a temporary name and renamed once complete, so a listed
`succeeded` backup is always whole. Backups go with their add-on when it is destroyed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from sqlite_utils import Database

from waka.controller._addon_provider import AddonFailed, Providers
from waka.controller._addon_records import AddonRow, find_addon
from waka.controller._apps import find_app
from waka.controller._convert import timestamp
from waka.controller._errors import Conflict, InvalidInput, NotFound
from waka.controller._store import Store
from waka.v1 import platform_pb2 as pb

Emit = Callable[[str], Awaitable[None]]
DEFAULT_ATTACHMENT = "DATABASE"


async def _quiet(_line: str) -> None:
    return None


class Backups:
    def __init__(
        self,
        store: Store,
        providers: Providers,
        directory: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._providers = providers
        self._directory = directory
        self._clock = clock

    def _path(self, addon_id: str, backup_id: str) -> Path:
        return self._directory / addon_id / f"{backup_id}.dump"

    async def _addon(self, ref: str, app: str) -> AddonRow:
        def read(db: Database) -> AddonRow:
            find_app(db, app)
            return find_addon(db, ref or DEFAULT_ATTACHMENT, app)

        row = await self._store.read(read)
        if not self._providers.get(row.service).supports_backups:
            raise InvalidInput(f"{row.name} is a {row.service} add-on; those have no backups.")
        return row

    async def capture(self, ref: str, app: str, emit: Emit = _quiet) -> pb.Backup:
        row = await self._addon(ref, app)
        provider = self._providers.get(row.service)

        def insert(db: Database) -> str:
            (number,) = db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_backup'"
                " RETURNING CAST(value AS INTEGER) - 1"
            ).fetchone()
            backup_id = f"b{int(number):03d}"
            db.execute(
                "INSERT INTO addon_backups (id, addon_id, app_id, status, created_at)"
                " VALUES (?, ?, ?, 'running', ?)",
                (backup_id, row.id, find_app(db, app).id, self._clock()),
            )
            return backup_id

        backup_id = await self._store.write(insert)
        await emit(f"Capturing {backup_id} of {row.name}...")
        path = self._path(row.id, backup_id)
        partial = path.with_suffix(".partial")
        # Until it is known to have succeeded, a backup has failed (also if this is cancelled).
        status, size, error = "failed", 0, "the capture was interrupted"
        try:
            await trio.Path(path.parent).mkdir(parents=True, exist_ok=True)
            await trio.to_thread.run_sync(provider.backup, row.record(), partial)
            await trio.Path(partial).rename(path)
            size = (await trio.Path(path).stat()).st_size
            status, error = "succeeded", ""
        except AddonFailed as failure:
            error = str(failure)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await trio.Path(partial).unlink(missing_ok=True)
                await self._store.write(
                    lambda db: db.execute(
                        "UPDATE addon_backups SET status = ?, size = ?, error = ?,"
                        " finished_at = ? WHERE id = ?",
                        (status, size, error, self._clock(), backup_id),
                    )
                )
        await emit(f"Captured {backup_id} ({size} bytes).")
        return await self.get(backup_id)

    async def get(self, backup_id: str) -> pb.Backup:
        backups = await self._store.read(lambda db: _load(db, "WHERE b.id = ?", (backup_id,)))
        if not backups:
            raise NotFound(f"No backup {backup_id!r}; `waka pg:backups -a APP` lists them.")
        return backups[0]

    async def list(self, app: str) -> list[pb.Backup]:
        def read(db: Database) -> list[pb.Backup]:
            return _load(db, "WHERE b.app_id = ?", (find_app(db, app).id,))

        return await self._store.read(read)

    async def path(self, backup_id: str) -> Path:
        """The file of a complete backup (for downloads)."""
        backup = await self.get(backup_id)
        if backup.status != "succeeded":
            raise Conflict(f"{backup_id} is {backup.status}: there is nothing to download.")
        addon_id = await self._store.read(
            lambda db: db.execute(
                "SELECT addon_id FROM addon_backups WHERE id = ?", (backup_id,)
            ).fetchone()[0]
        )
        return self._path(addon_id, backup_id)

    async def restore(
        self, backup_id: str, ref: str, app: str, confirm: str, emit: Emit = _quiet
    ) -> pb.Backup:
        if confirm.strip() != app:
            raise InvalidInput(
                f"Restoring replaces the data of {app}'s database: re-run with --confirm {app}."
            )
        row = await self._addon(ref, app)
        path = await self.path(backup_id)
        await emit(f"Restoring {backup_id} into {row.name}...")
        await trio.to_thread.run_sync(self._providers.get(row.service).restore, row.record(), path)
        return await self.get(backup_id)

    async def forget_addon(self, addon_id: str) -> None:
        """The destroyed add-on's backup files go with it (their rows went by cascade)."""
        await trio.to_thread.run_sync(shutil.rmtree, self._directory / addon_id, True)


def _load(db: Database, where: str, params: tuple[object, ...]) -> list[pb.Backup]:
    backups = []
    for backup_id, addon, app, status, size, created, finished, error in db.execute(
        "SELECT b.id, a.name, COALESCE(p.name, ''), b.status, b.size, b.created_at,"
        " b.finished_at, b.error FROM addon_backups b JOIN addons a ON a.id = b.addon_id"
        f" LEFT JOIN apps p ON p.id = b.app_id {where} ORDER BY b.created_at DESC, b.id DESC",
        params,
    ):
        backup = pb.Backup(
            id=backup_id, addon=addon, app=app, status=status, size=size, error=error
        )
        backup.created_at.CopyFrom(timestamp(created))
        if finished:
            backup.finished_at.CopyFrom(timestamp(finished))
        backups.append(backup)
    return backups
