"""Making releases go live: release phase, promotion, rollback.

Every change users make to a running app (a deploy, a config change, a rollback) ends here, as one
new release. Without a `release` process type the release is current at once. With one, the
release starts `pending`, its command runs in a one-off dyno, and only a zero exit makes it
`succeeded` and current; otherwise it is `failed` and nothing about the running app changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
import trio.lowlevel
from sqlite_utils import Database

from waka.controller._apps import AppRow, find_app
from waka.controller._blobs import BlobStore
from waka.controller._errors import Conflict, NotFound
from waka.controller._logs import LogFilter, LogHub
from waka.controller._oneoff import OneOffs
from waka.controller._reconcile import Reconciler
from waka.controller._releases import SlugInfo, add_new_process_types, create_release
from waka.controller._store import Store

Emit = Callable[[str], Awaitable[None]]
Prepare = Callable[[Database, AppRow], None]
# (db, app, the target release's config) -> (the config the rollback gets, names that differ).
RollbackConfig = Callable[[Database, AppRow, dict[str, str]], tuple[dict[str, str], list[str]]]

DEFAULT_PHASE_TIMEOUT = 60 * 60
# After a release command exits, how long its last lines may take to arrive.
OUTPUT_GRACE = 3.0


async def _discard(_line: str) -> None:
    return None


def _target_config(
    _db: Database, _app: AppRow, config: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    return config, []


class Releaser:
    def __init__(
        self,
        store: Store,
        hub: LogHub,
        reconciler: Reconciler,
        oneoffs: OneOffs,
        *,
        slugs: BlobStore,
        output_dir: Path,
        spawn: Callable[..., None],
        clock: Callable[[], float] = time.time,
        phase_timeout: float = DEFAULT_PHASE_TIMEOUT,
    ) -> None:
        self._store = store
        self._hub = hub
        self._reconciler = reconciler
        self._oneoffs = oneoffs
        self._slugs = slugs
        self._output_dir = output_dir
        self._spawn = spawn
        self._clock = clock
        self._phase_timeout = phase_timeout
        # Add-ons are not rolled back: the add-ons service sets this so a rollback keeps the
        # current values of the config vars its attachments own.
        self.rollback_config: RollbackConfig = _target_config

    async def release(
        self,
        app_name: str,
        *,
        slug: SlugInfo,
        description: str,
        user: str,
        config: dict[str, str] | None = None,
        prepare: Prepare | None = None,
        emit: Emit | None = None,
        wait: bool = True,
    ) -> tuple[int, bool]:
        """Creates the release (after `prepare`, in the same transaction) and takes it live.

        Returns (version, went live). With `wait=False` a release phase runs in the background
        and the second value is False until it succeeds.
        """
        command = slug.process_types.get("release", "")

        def create(db: Database) -> int:
            app = find_app(db, app_name)
            if prepare is not None:
                prepare(db, app)
            return create_release(
                db,
                app.id,
                description=description,
                user=user,
                now=self._clock(),
                slug=slug,
                config=config,
                status="pending" if command else "succeeded",
            )

        version = await self._store.write(create)
        self._hub.emit(app_name, f"Release v{version} created by {user}")
        if not command:
            await self._reconciler.reconcile_app(app_name)
            return version, True
        if not wait:
            self._spawn(self._phase, app_name, version, command, _discard)
            return version, False
        return version, await self._phase(app_name, version, command, emit or _discard)

    async def _phase(self, app_name: str, version: int, command: str, emit: Emit) -> bool:
        await emit("-----> Running release command...")
        output_path = await self._output_path(app_name, version)
        oneoff = await self._oneoffs.create(
            app_name,
            command,
            kind="release",
            release=version,
            timeout_seconds=int(self._phase_timeout),
        )
        history, tail = self._hub.open_tail(app_name, LogFilter(dyno=oneoff.name), 0)
        del history
        code: int | None = None
        try:
            with output_path.open("w", encoding="utf-8") as out:
                async with trio.open_nursery() as nursery:

                    async def relay() -> None:
                        while (batch := await tail.next_batch()) is not None:
                            for line in batch:
                                out.write(line.text + "\n")
                                # The command's output, and the platform's errors about it
                                # (a timeout, a memory kill) so the pusher sees why it failed.
                                if line.source == "app" or line.text.startswith("Error "):
                                    await emit(f"       {line.text}")
                            out.flush()

                    nursery.start_soon(relay)
                    await self._oneoffs.launch(oneoff)
                    with trio.move_on_after(self._phase_timeout + 60):
                        code = await self._oneoffs.wait(oneoff)
                    # The exit is reported on the session; the last lines come on the log
                    # stream and may trail it a little.
                    await trio.lowlevel.checkpoint()
                    with trio.move_on_after(OUTPUT_GRACE):
                        await self._settle(app_name, oneoff.name)
                    nursery.cancel_scope.cancel()
        finally:
            self._hub.close_tail(tail)
            with trio.CancelScope(shield=True):
                await self._oneoffs.remove(oneoff)
        ok = code == 0
        await self._store.write(lambda db: self._settle_release(db, app_name, version, ok))
        if ok:
            self._hub.emit(app_name, f"Release v{version} release command succeeded")
            await emit("       Release command succeeded.")
            await self._reconciler.reconcile_app(app_name)
        else:
            reason = {
                None: f"did not finish within {int(self._phase_timeout)} seconds",
                -1: "never finished: its dyno could not start or its node was lost",
            }.get(code, f"exited with status {code}")
            self._hub.emit(app_name, f"Release v{version} failed: the release command {reason}")
            await emit(f" !     Release command {reason}: v{version} was not deployed.")
        return ok

    async def _settle(self, app_name: str, dyno: str) -> None:
        """Waits until the agent's exit line for `dyno` is in the stream (its output is before)."""
        while True:
            for line in self._hub.history(app_name, LogFilter(source="waka", dyno=dyno), 5):
                if line.text.startswith("Process exited"):
                    return
            await trio.sleep(0.02)

    @staticmethod
    def _settle_release(db: Database, app_name: str, version: int, ok: bool) -> None:
        app = find_app(db, app_name)
        db.execute(
            "UPDATE releases SET status = ? WHERE app_id = ? AND version = ?",
            ("succeeded" if ok else "failed", app.id, version),
        )
        if ok:
            (types,) = db.execute(
                "SELECT process_types FROM releases WHERE app_id = ? AND version = ?",
                (app.id, version),
            ).fetchone()
            # A newer release may have gone live meanwhile; never step back over it.
            db.execute(
                "UPDATE apps SET current_release = ? WHERE id = ? AND current_release < ?",
                (version, app.id, version),
            )
            add_new_process_types(db, app.id, json.loads(types))

    async def _output_path(self, app_name: str, version: int) -> Path:
        app = await self._store.read(lambda db: find_app(db, app_name))
        directory = self._output_dir / app.id
        await trio.Path(directory).mkdir(parents=True, exist_ok=True)
        return directory / f"v{version}.log"

    async def output(self, app_name: str, version: int) -> list[str]:
        app = await self._store.read(lambda db: find_app(db, app_name))
        version = version or app.current_release
        path = trio.Path(self._output_dir / app.id / f"v{version}.log")
        if not await path.exists():
            raise NotFound(f"v{version} of {app_name} has no release phase output.")
        return (await path.read_text(encoding="utf-8")).splitlines()

    # ------------------------------------------------------------ rollback

    async def rollback(self, app_name: str, version: int, user: str) -> tuple[int, bool]:
        def target(db: Database) -> tuple[int, SlugInfo, dict[str, str]]:
            app = find_app(db, app_name)
            if not app.current_release:
                raise Conflict(f"{app_name} has no releases to roll back.")
            if version:
                row = db.execute(
                    f"SELECT {_AGAIN_COLUMNS} FROM releases WHERE app_id = ? AND version = ?",
                    (app.id, version),
                ).fetchone()
                if row is None:
                    raise NotFound(f"Release v{version} not found for {app_name}.")
                if row[7] != "succeeded":
                    raise Conflict(
                        f"v{version} is {row[7]}; only a release that went live can be rolled"
                        " back to."
                    )
            else:
                row = db.execute(
                    f"SELECT {_AGAIN_COLUMNS} FROM releases WHERE app_id = ? AND version < ?"
                    " AND status = 'succeeded' AND slug_sha256 IS NOT NULL"
                    " ORDER BY version DESC LIMIT 1",
                    (app.id, app.current_release),
                ).fetchone()
                if row is None:
                    raise Conflict(f"{app_name} has no earlier release to roll back to.")
            return _slug_and_config(row, "roll back to")

        to_version, slug, config = await self._store.read(target)
        return await self._release_again(
            app_name, to_version, slug, config, user, f"Rollback to v{to_version}", "rolled back"
        )

    async def retry(self, app_name: str, user: str) -> tuple[int, bool]:
        """`releases:retry`: the latest release again, as a new one, so its release phase runs
        again (after a migration failed on a database that was down, say)."""

        def latest(db: Database) -> tuple[int, SlugInfo, dict[str, str]]:
            app = find_app(db, app_name)
            row = db.execute(
                f"SELECT {_AGAIN_COLUMNS} FROM releases WHERE app_id = ?"
                " ORDER BY version DESC LIMIT 1",
                (app.id,),
            ).fetchone()
            if row is None:
                raise Conflict(f"{app_name} has no releases to retry.")
            if "release" not in json.loads(row[3] or "{}"):
                raise Conflict(
                    f"v{row[0]} has no release phase to retry: its Procfile has no `release`"
                    " process."
                )
            return _slug_and_config(row, "retry")

        version, slug, config = await self._store.read(latest)
        return await self._release_again(
            app_name, version, slug, config, user, f"Retry of v{version}", "retried"
        )

    async def _release_again(
        self,
        app_name: str,
        to_version: int,
        slug: SlugInfo,
        config: dict[str, str],
        user: str,
        description: str,
        verb: str,
    ) -> tuple[int, bool]:
        """A new release of an earlier one's slug and config (add-ons' vars stay current)."""
        if not self._slugs.has(slug.sha256):
            raise Conflict(
                f"v{to_version}'s slug ({slug.sha256[:12]}) is no longer stored, so it cannot be"
                f" {verb}."
            )
        # For the description; the config itself is settled in the release's transaction.
        _, kept = await self._store.read(
            lambda db: self.rollback_config(db, find_app(db, app_name), config)
        )

        def restore_config(db: Database, app: AppRow) -> None:
            restored, _ = self.rollback_config(db, app, config)
            db.execute("DELETE FROM config_vars WHERE app_id = ?", (app.id,))
            db.conn.executemany(
                "INSERT INTO config_vars (app_id, name, value) VALUES (?, ?, ?)",
                [(app.id, k, v) for k, v in restored.items()],
            )

        self._hub.emit(app_name, f"{description} by {user}")
        if kept:
            description += f" (add-on config not rolled back: {', '.join(kept)})"
            self._hub.emit(
                app_name, f"Add-ons are not rolled back: {', '.join(kept)} stay as they are now"
            )
        return await self.release(
            app_name,
            slug=slug,
            description=description,
            user=user,
            prepare=restore_config,
            wait=False,
        )


_AGAIN_COLUMNS = (
    "version, slug_sha256, slug_size, process_types, buildpacks, stack, config, status,"
    " health_check_path"
)


def _slug_and_config(row: tuple, doing: str) -> tuple[int, SlugInfo, dict[str, str]]:
    if not row[1]:
        raise Conflict(f"v{row[0]} has no slug, so there is nothing to {doing}.")
    slug = SlugInfo(row[1], row[2], json.loads(row[3]), json.loads(row[4]), row[5], row[8])
    return row[0], slug, json.loads(row[6])
