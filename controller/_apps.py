"""App resources: create, list, inspect and destroy apps, and change their config vars."""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio
from sqlite_utils import Database

from waka.controller._config_vars import check_config_name, check_config_size
from waka.controller._convert import timestamp
from waka.controller._errors import AlreadyExists, Conflict, InvalidInput, app_not_found
from waka.controller._logs import LogHub
from waka.controller._names import check_app_name, random_app_name
from waka.controller._reconcile import Reconciler

if TYPE_CHECKING:
    from waka.controller._releaser import Releaser
from waka.controller._releases import current_config, current_slug
from waka.controller._store import Store
from waka.v1.platform_pb2 import App

STACK = "host"


async def _nothing(_app: str, _user: str) -> None:
    return None


class Repos(Protocol):
    def ensure_repo(self, app: str) -> None: ...
    def rename_repo(self, old: str, new: str) -> None: ...
    def delete_repo(self, app: str) -> None: ...


class RouteUpdates(Protocol):
    async def refresh(self, app: str) -> None: ...
    def forget(self, app: str) -> None: ...
    async def load_domains(self) -> None: ...


@dataclass(frozen=True)
class AppRow:
    id: str
    name: str
    uid: int
    stack: str
    created_at: float
    current_release: int
    maintenance: bool = False
    preboot: bool = True
    private_network: bool = False


_APP_COLUMNS = (
    "id, name, uid, stack, created_at, current_release, maintenance, preboot, private_network"
)


def _app_row(row: tuple) -> AppRow:
    return AppRow(
        *row[:6], maintenance=bool(row[6]), preboot=bool(row[7]), private_network=bool(row[8])
    )


def find_app(db: Database, name: str) -> AppRow:
    row = db.execute(f"SELECT {_APP_COLUMNS} FROM apps WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise app_not_found(name)
    return _app_row(row)


_BUILDPACK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_BUILDPACK_URL = re.compile(
    r"^(https?|git|ssh|file)://[^\s#]+(#[^\s]+)?$|^git@[^\s:]+:[^\s#]+(#\S+)?$"
)


def check_buildpack(buildpack: str) -> str:
    """A built-in name (`python`), an absolute path on the builders, or a git URL (`#ref`)."""
    value = buildpack.strip()
    if _BUILDPACK_NAME.match(value) or _BUILDPACK_URL.match(value):
        return value
    if value.startswith("/") and "\0" not in value and ".." not in value.split("/"):
        return value
    raise InvalidInput(
        f"Invalid buildpack {buildpack!r}: give a built-in name (python), an absolute path on the"
        " builders, or a git URL with an optional #ref."
    )


def _allocate_uid(db: Database) -> int:
    # A counter, never reused: a new app must not inherit files a destroyed app left on a node.
    (uid,) = db.execute(
        "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'next_uid'"
        " RETURNING CAST(value AS INTEGER) - 1"
    ).fetchone()
    return int(uid)


class Apps:
    def __init__(
        self,
        store: Store,
        hub: LogHub,
        reconciler: Reconciler,
        releaser: Releaser,
        repos: Repos,
        routes: RouteUpdates,
        *,
        git_url: Callable[[str], str],
        web_url: Callable[[str], str],
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._hub = hub
        self._reconciler = reconciler
        self._releaser = releaser
        self._repos = repos
        self._routes = routes
        self._git_url = git_url
        self._web_url = web_url
        self._clock = clock
        self._rng = rng or random.Random()
        # Told the name of each destroyed app (its drains stop).
        self.on_destroyed: Callable[[str], None] = lambda _name: None
        # Awaited before an app is deleted, with its name and the user (its add-ons go first).
        self.before_destroy: Callable[[str, str], Awaitable[None]] = _nothing
        # Awaited after an app got a new name, with the old and the new (drains, add-ons).
        self.on_renamed: Callable[[str, str], Awaitable[None]] = _nothing

    def message(self, app: AppRow) -> App:
        return App(
            name=app.name,
            id=app.id,
            created_at=timestamp(app.created_at),
            git_url=self._git_url(app.name),
            web_url=self._web_url(app.name),
            current_release=app.current_release,
            stack=app.stack,
            uid=app.uid,
            maintenance=app.maintenance,
            preboot=app.preboot,
            private_network=app.private_network,
        )

    async def create(self, name: str, user: str) -> App:
        if name:
            check_app_name(name)

        def insert(db: Database) -> AppRow:
            chosen = name
            if not chosen:
                for _ in range(20):
                    chosen = random_app_name(self._rng)
                    if not db.execute("SELECT 1 FROM apps WHERE name = ?", (chosen,)).fetchone():
                        break
            elif db.execute("SELECT 1 FROM apps WHERE name = ?", (chosen,)).fetchone():
                raise AlreadyExists(f"Name {chosen} is already taken.")
            app = AppRow(uuid.uuid4().hex, chosen, _allocate_uid(db), STACK, self._clock(), 0)
            db.execute(
                "INSERT INTO apps (id, name, uid, stack, created_at) VALUES (?, ?, ?, ?, ?)",
                (app.id, app.name, app.uid, app.stack, app.created_at),
            )
            return app

        app = await self._store.write(insert)
        self._hub.name_taken(app.name)
        await trio.to_thread.run_sync(self._repos.ensure_repo, app.name)
        await self._routes.refresh(app.name)
        self._hub.emit(app.name, f"Created app {app.name} by {user}")
        return self.message(app)

    async def list(self) -> list[App]:
        rows = await self._store.read(
            lambda db: [
                _app_row(r) for r in db.execute(f"SELECT {_APP_COLUMNS} FROM apps ORDER BY name")
            ]
        )
        return [self.message(r) for r in rows]

    async def get(self, name: str) -> App:
        return self.message(await self._store.read(lambda db: find_app(db, name)))

    async def rename(self, name: str, new_name: str, user: str) -> App:
        """A new name: URLs, git repository, log stream and history, drains and add-ons follow.
        The caller replaces the dynos, whose specs carry the name they were made with."""
        check_app_name(new_name)

        def update(db: Database) -> AppRow:
            app = find_app(db, name)
            if new_name == name:
                raise InvalidInput(f"{name} is already called {new_name}.")
            if db.execute("SELECT 1 FROM apps WHERE name = ?", (new_name,)).fetchone():
                raise AlreadyExists(f"Name {new_name} is already taken.")
            if db.execute(
                "SELECT 1 FROM builds WHERE app_id = ? AND status IN ('pending', 'building')",
                (app.id,),
            ).fetchone():
                raise Conflict(f"{name} has a build running: rename it once the build is over.")
            db.execute("UPDATE apps SET name = ? WHERE id = ?", (new_name, app.id))
            return find_app(db, new_name)

        app = await self._store.write(update)
        await trio.to_thread.run_sync(self._repos.rename_repo, name, new_name)
        self._hub.rename(name, new_name)
        self._routes.forget(name)
        await self._routes.refresh(new_name)
        await self._routes.load_domains()
        await self.on_renamed(name, new_name)
        self._hub.emit(new_name, f"Renamed from {name} by {user}")
        return self.message(app)

    async def destroy(self, name: str, confirm: str, user: str) -> None:
        app = await self._store.read(lambda db: find_app(db, name))
        if confirm != name:
            raise InvalidInput(
                f"Destroying {name} needs confirmation: re-run with --confirm {name}."
            )
        await self.before_destroy(name, user)
        nodes = await self._store.write(lambda db: self._delete(db, app.id))
        await trio.to_thread.run_sync(self._repos.delete_repo, name)
        self._hub.forget(name)
        self._routes.forget(name)
        self.on_destroyed(name)
        await self._routes.load_domains()
        for node_id in nodes:
            await self._reconciler.push_node(node_id)
        del user

    @staticmethod
    def _delete(db: Database, app_id: str) -> set[str]:
        nodes = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT node_id FROM dynos WHERE app_id = ? AND node_id IS NOT NULL",
                (app_id,),
            )
        }
        # The nodes still run these dynos until their next assignment: remember them as ours.
        db.execute(
            "INSERT OR IGNORE INTO dyno_tombstones (id, node_id) SELECT id, node_id FROM dynos"
            " WHERE app_id = ? AND node_id IS NOT NULL",
            (app_id,),
        )
        # Cascades to config, builds, releases, formation and dynos.
        db.execute("DELETE FROM apps WHERE id = ?", (app_id,))
        return nodes

    async def set_maintenance(self, name: str, on: bool, user: str) -> App:
        def update(db: Database) -> AppRow:
            app = find_app(db, name)
            db.execute("UPDATE apps SET maintenance = ? WHERE id = ?", (int(on), app.id))
            return find_app(db, name)

        app = await self._store.write(update)
        await self._routes.refresh(name)
        self._hub.emit(name, f"Maintenance mode {'enabled' if on else 'disabled'} by {user}")
        return self.message(app)

    async def set_preboot(self, name: str, on: bool, user: str) -> App:
        def update(db: Database) -> AppRow:
            app = find_app(db, name)
            db.execute("UPDATE apps SET preboot = ? WHERE id = ?", (int(on), app.id))
            return find_app(db, name)

        app = await self._store.write(update)
        self._hub.emit(name, f"Preboot {'enabled' if on else 'disabled'} by {user}")
        return self.message(app)

    async def set_private_network(self, name: str, on: bool, user: str) -> tuple[App, bool]:
        """Turns the private-network feature on or off; returns the app and whether it changed.
        Only dynos made from now on follow it (a dyno's spec never changes): the caller
        replaces the running ones when it changed."""

        def update(db: Database) -> tuple[AppRow, bool]:
            app = find_app(db, name)
            if app.private_network == on:
                return app, False
            db.execute("UPDATE apps SET private_network = ? WHERE id = ?", (int(on), app.id))
            return find_app(db, name), True

        app, changed = await self._store.write(update)
        if changed:
            self._hub.emit(name, f"Private network {'enabled' if on else 'disabled'} by {user}")
        return self.message(app), changed

    # ------------------------------------------------------------ buildpacks

    async def buildpacks(self, name: str) -> list[str]:
        def read(db: Database) -> list[str]:
            app = find_app(db, name)
            (value,) = db.execute("SELECT buildpacks FROM apps WHERE id = ?", (app.id,)).fetchone()
            return list(json.loads(value))

        return await self._store.read(read)

    async def set_buildpacks(self, name: str, buildpacks: list[str], user: str) -> list[str]:
        checked = [check_buildpack(b) for b in buildpacks]
        if len(set(checked)) != len(checked):
            raise InvalidInput("A buildpack may be listed only once.")

        def update(db: Database) -> None:
            app = find_app(db, name)
            db.execute("UPDATE apps SET buildpacks = ? WHERE id = ?", (json.dumps(checked), app.id))

        await self._store.write(update)
        self._hub.emit(name, f"Set buildpacks to {', '.join(checked) or 'detection'} by {user}")
        return checked

    # ------------------------------------------------------------ config vars

    async def config(self, name: str) -> dict[str, str]:
        return await self._store.read(lambda db: current_config(db, find_app(db, name).id))

    async def update_config(
        self, name: str, to_set: Mapping[str, str], to_unset: Sequence[str], user: str
    ) -> tuple[dict[str, str], int]:
        """Applies a config change and makes a release for it when the app has a slug."""
        for key in [*to_set, *to_unset]:
            check_config_name(key)
        for key, value in to_set.items():
            if "\x00" in value:
                raise InvalidInput(f"The value of {key} contains a NUL character.")

        def apply(db: Database, app: AppRow) -> None:
            config = current_config(db, app.id)
            config.update(to_set)
            for key in to_unset:
                config.pop(key, None)
            check_config_size(config)
            db.execute("DELETE FROM config_vars WHERE app_id = ?", (app.id,))
            db.conn.executemany(
                "INSERT INTO config_vars (app_id, name, value) VALUES (?, ?, ?)",
                [(app.id, k, v) for k, v in config.items()],
            )

        parts = []
        if to_set:
            parts.append(f"Config add {', '.join(sorted(to_set))}")
        if to_unset:
            parts.append(f"Config remove {', '.join(sorted(to_unset))}")
        description = "; ".join(parts) or "Config unchanged"
        slug = await self._store.read(lambda db: current_slug(db, find_app(db, name).id))
        version = 0
        if slug is None:
            await self._store.write(lambda db: apply(db, find_app(db, name)))
        else:
            version, _ = await self._releaser.release(
                name, slug=slug, description=description, user=user, prepare=apply, wait=False
            )
        if to_set:
            self._hub.emit(name, f"Set {', '.join(sorted(to_set))} config vars by {user}")
        if to_unset:
            self._hub.emit(name, f"Unset {', '.join(sorted(to_unset))} config vars by {user}")
        config = await self.config(name)
        return config, version
