"""Keeps the router's table in step with the platform: web dynos, maintenance mode, domains.

The router never reads SQLite; this module pushes it each app's web dynos (with their reported
states and addresses) whenever they change. Only dynos the database still wants running are
routable, so marking a dyno to stop takes it out of rotation at once; `drain` then waits for its
in-flight requests before the agent is told to stop it. That ordering (new dynos up and routed,
old ones drained, then SIGTERM) is what makes a deploy drop no request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from functools import partial

import trio
from sqlite_utils import Database

from waka.controller._apps import find_app
from waka.controller._convert import timestamp
from waka.controller._errors import AlreadyExists, InvalidInput, NotFound
from waka.controller._fleet import Fleet
from waka.controller._router_table import AppRoute, RoutingTable, WebDyno
from waka.controller._store import Store
from waka.v1.agent_pb2 import DynoStatus
from waka.v1.common_pb2 import DynoState
from waka.v1.platform_pb2 import Domain

STATE_WORDS = {
    DynoState.DYNO_STATE_STARTING: "starting",
    DynoState.DYNO_STATE_UP: "up",
    DynoState.DYNO_STATE_CRASHED: "crashed",
    DynoState.DYNO_STATE_DOWN: "down",
    DynoState.DYNO_STATE_PENDING: "starting",
}
DRAIN_GRACE = 10.0
_HOSTNAME = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def dial_address(status: DynoStatus, node_address: str) -> str:
    """Where the router reaches a web dyno ("host:port"; empty while it has no port): the
    address the dyno reports when it has one of its own (a private network on a loopback node),
    else its node's address and its port."""
    if status.address:
        return status.address
    if not status.port:
        return ""
    return f"{node_address or '127.0.0.1'}:{status.port}"


def check_hostname(hostname: str) -> str:
    name = hostname.strip().lower().rstrip(".")
    if len(name) > 253 or not _HOSTNAME.match(name) or "." not in name.lstrip("*."):
        raise InvalidInput(
            f"Invalid domain {hostname!r}: use a host name like www.example.home.lan"
            " (a leading `*.` makes a wildcard)."
        )
    return name


def _read_web_dynos(
    apps: Iterable[str], db: Database
) -> dict[str, tuple[bool, list[tuple[str, int, int]]]]:
    """Per app that exists: its maintenance flag and the (id, index, release) of its web dynos
    the database wants running."""
    found = {}
    for app in apps:
        row = db.execute("SELECT id, maintenance FROM apps WHERE name = ?", (app,)).fetchone()
        if row is None:
            continue
        dynos = db.execute(
            "SELECT id, idx, release_version FROM dynos WHERE app_id = ? AND type = 'web'"
            " AND desired = 'run' AND oneoff = 0",
            (row[0],),
        ).fetchall()
        found[app] = (bool(row[1]), dynos)
    return found


class Routes:
    def __init__(
        self,
        table: RoutingTable,
        store: Store,
        fleet: Fleet,
        *,
        drain_grace: float = DRAIN_GRACE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self._store = store
        self._fleet = fleet
        self._drain_grace = drain_grace
        self._clock = clock
        # Apps to read again, and how many refreshes were asked for and served (see refresh).
        self._stale: set[str] = set()
        self._asked = 0
        self._served = 0
        self._refreshing = trio.Lock()

    async def refresh(self, app: str) -> None:
        """Routes the app's web dynos as they are now (by the time this returns).

        Agents' statuses ask for a refresh of every app they touch, a few hundred a second at
        fleet scale, and each read is a hop to the store's thread. So refreshes asked for while
        one is reading wait for it and are then read together, in one hop: each caller still
        returns only after a read that started after it asked.
        """
        self._stale.add(app)
        self._asked += 1
        ticket = self._asked
        async with self._refreshing:
            if self._served >= ticket:
                return
            asked = self._asked
            apps, self._stale = self._stale, set()
            try:
                found = await self._store.read(partial(_read_web_dynos, sorted(apps)))
            except BaseException:
                self._stale |= apps
                raise
            self._served = asked
            for name in sorted(apps):
                self._route(name, found.get(name))

    def _route(self, app: str, found: tuple[bool, list[tuple[str, int, int]]] | None) -> None:
        if found is None:
            self.forget(app)
            return
        maintenance, rows = found
        web = []
        for dyno_id, idx, release in rows:
            status = self._fleet.dyno_status(dyno_id)
            if status is None:
                web.append(WebDyno(f"web.{idx}", "starting", "", release))
                continue
            address = ""
            session = self._fleet.session(self._fleet.node_of(dyno_id) or "")
            if session is not None:
                address = dial_address(status, session.inventory.address)
            web.append(
                WebDyno(f"web.{idx}", STATE_WORDS.get(status.state, "down"), address, release)
            )
        self.table.update_app(AppRoute.build(app, web, maintenance=maintenance))

    async def refresh_all(self) -> None:
        names = await self._store.read(
            lambda db: [r[0] for r in db.execute("SELECT name FROM apps")]
        )
        for name in names:
            await self.refresh(name)
        await self.load_domains()

    def forget(self, app: str) -> None:
        self.table.remove_app(app)

    async def drain(self, app: str, dyno_ids: Iterable[str]) -> None:
        """Takes dynos out of rotation and waits (a bounded time) for their requests to end."""
        addresses = []
        for dyno_id in dyno_ids:
            status = self._fleet.dyno_status(dyno_id)
            session = self._fleet.session(self._fleet.node_of(dyno_id) or "")
            address = (
                dial_address(status, session.inventory.address)
                if status is not None and session is not None
                else ""
            )
            if address:
                addresses.append(address)
        await self.refresh(app)
        if not addresses:
            return
        for address in addresses:
            self.table.drain(address)
        with trio.move_on_after(self._drain_grace):
            for address in addresses:
                await self.table.wait_drained(address)

    # ------------------------------------------------------------ domains

    async def load_domains(self) -> None:
        mapping = await self._store.read(
            lambda db: {
                host: app
                for host, app in db.execute(
                    "SELECT d.hostname, a.name FROM domains d JOIN apps a ON a.id = d.app_id"
                )
            }
        )
        self.table.set_domains(mapping)

    async def domains(self, app_name: str) -> list[Domain]:
        def read(db: Database) -> list[Domain]:
            app = find_app(db, app_name)
            default = Domain(
                hostname=f"{app.name}.{self.table.domain}",
                app=app.name,
                kind="default",
                created_at=timestamp(app.created_at),
            )
            custom = [
                Domain(hostname=h, app=app.name, kind="custom", created_at=timestamp(t))
                for h, t in db.execute(
                    "SELECT hostname, created_at FROM domains WHERE app_id = ? ORDER BY hostname",
                    (app.id,),
                )
            ]
            return [default, *custom]

        return await self._store.read(read)

    async def add_domain(self, app_name: str, hostname: str) -> Domain:
        name = check_hostname(hostname)
        if name == self.table.domain or name.endswith("." + self.table.domain):
            raise InvalidInput(
                f"{name} is under waka's own domain {self.table.domain}; apps already get"
                f" APP.{self.table.domain}."
            )
        now = self._clock()

        def insert(db: Database) -> None:
            app = find_app(db, app_name)
            owner = db.execute(
                "SELECT a.name FROM domains d JOIN apps a ON a.id = d.app_id WHERE d.hostname = ?",
                (name,),
            ).fetchone()
            if owner is not None:
                raise AlreadyExists(f"Domain {name} is already added to {owner[0]}.")
            db.execute(
                "INSERT INTO domains (hostname, app_id, created_at) VALUES (?, ?, ?)",
                (name, app.id, now),
            )

        await self._store.write(insert)
        await self.load_domains()
        return Domain(hostname=name, app=app_name, kind="custom", created_at=timestamp(now))

    async def remove_domain(self, app_name: str, hostname: str) -> None:
        name = hostname.strip().lower().rstrip(".")

        def delete(db: Database) -> None:
            app = find_app(db, app_name)
            deleted = db.execute(
                "DELETE FROM domains WHERE hostname = ? AND app_id = ?", (name, app.id)
            ).rowcount
            if not deleted:
                raise NotFound(f"Domain {name} is not added to {app_name}.")

        await self._store.write(delete)
        await self.load_domains()
