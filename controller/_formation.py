"""Formation and dynos: scaling, listing what runs, restarting."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlite_utils import Database

from waka.controller._apps import find_app
from waka.controller._convert import timestamp
from waka.controller._errors import Conflict, InvalidInput, NotFound
from waka.controller._fleet import Fleet
from waka.controller._logs import LogHub
from waka.controller._reconcile import APP_PRIVATE_NETWORK, Reconciler, next_dyno_seq
from waka.controller._releases import NOT_SCALED
from waka.controller._routes import dial_address
from waka.controller._sizes import check_size
from waka.controller._store import Store
from waka.v1.common_pb2 import DynoState
from waka.v1.platform_pb2 import Dyno, FormationEntry

MAX_DYNOS_PER_APP = 100


@dataclass(frozen=True)
class ScaleChange:
    type: str
    quantity: int | None  # None keeps the quantity (a size-only change)
    relative: bool = False
    size: str = ""


def _process_types(db: Database, app_id: str, release: int) -> dict[str, str]:
    row = db.execute(
        "SELECT process_types FROM releases WHERE app_id = ? AND version = ?", (app_id, release)
    ).fetchone()
    return json.loads(row[0]) if row else {}


def _formation(db: Database, app_id: str, process_types: dict[str, str]) -> list[FormationEntry]:
    return [
        FormationEntry(
            type=ptype, quantity=quantity, size=size, command=process_types.get(ptype, "")
        )
        for ptype, quantity, size in db.execute(
            "SELECT type, quantity, size FROM formation WHERE app_id = ? ORDER BY type",
            (app_id,),
        )
        if ptype in process_types
    ]


def _insert_replacements(db: Database, app_id: str, rows: Sequence[tuple], now: float) -> None:
    """New dynos for the given slots; the reconciler stops the old ones once these are up."""
    seq = next_dyno_seq(db)
    for ptype, idx, release, size in rows:
        db.execute(
            "INSERT INTO dynos (id, app_id, type, idx, release_version, node_id, desired,"
            " created_at, seq, size, private_network) VALUES (?, ?, ?, ?, ?, NULL, 'run', ?, ?,"
            f" ?, {APP_PRIVATE_NETWORK})",
            (uuid.uuid4().hex, app_id, ptype, idx, release, now, seq, size, app_id),
        )
        seq += 1


class Formation:
    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        hub: LogHub,
        reconciler: Reconciler,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._fleet = fleet
        self._hub = hub
        self._reconciler = reconciler
        self._clock = clock

    async def list(self, app_name: str) -> list[FormationEntry]:
        def read(db: Database) -> list[FormationEntry]:
            app = find_app(db, app_name)
            return _formation(db, app.id, _process_types(db, app.id, app.current_release))

        return await self._store.read(read)

    async def scale(
        self, app_name: str, changes: Sequence[ScaleChange], user: str
    ) -> list[FormationEntry]:
        if not changes:
            raise InvalidInput("Nothing to scale: give changes like web=2 or worker+1.")
        for change in changes:
            if change.size:
                check_size(change.size)

        def apply(db: Database) -> tuple[list[FormationEntry], str]:
            app = find_app(db, app_name)
            if not app.current_release:
                raise Conflict(f"{app_name} has no release yet: deploy it before scaling.")
            process_types = _process_types(db, app.id, app.current_release)
            scalable = sorted(t for t in process_types if t not in NOT_SCALED)
            current = {
                t: (q, s)
                for t, q, s in db.execute(
                    "SELECT type, quantity, size FROM formation WHERE app_id = ?", (app.id,)
                )
            }
            resized: list[str] = []
            for change in changes:
                if change.type not in scalable:
                    raise NotFound(
                        f"Couldn't find that process type ({change.type}); {app_name} has: "
                        f"{', '.join(scalable) or 'none'}."
                    )
                quantity, size = current.get(change.type, (0, "standard-1x"))
                if change.quantity is not None:
                    quantity = quantity + change.quantity if change.relative else change.quantity
                if quantity < 0:
                    raise InvalidInput(
                        f"Cannot scale {change.type} below 0 (it would be {quantity})."
                    )
                new_size = check_size(change.size) if change.size else size
                if new_size != size:
                    resized.append(change.type)
                current[change.type] = (quantity, new_size)
            total = sum(q for t, (q, _) in current.items() if t in process_types)
            if total > MAX_DYNOS_PER_APP:
                raise InvalidInput(
                    f"An app may run at most {MAX_DYNOS_PER_APP} dynos; this would be {total}."
                )
            for ptype, (quantity, size) in current.items():
                db.execute(
                    "INSERT INTO formation (app_id, type, quantity, size) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (app_id, type) DO UPDATE SET quantity = excluded.quantity,"
                    " size = excluded.size",
                    (app.id, ptype, quantity, size),
                )
            if resized:
                marks = ",".join("?" * len(resized))
                rows = db.execute(
                    "SELECT type, idx, release_version, size FROM dynos WHERE app_id = ?"
                    f" AND desired = 'run' AND oneoff = 0 AND type IN ({marks})",
                    (app.id, *resized),
                ).fetchall()
                _insert_replacements(
                    db,
                    app.id,
                    [(t, i, r, current[t][1]) for t, i, r, _ in rows],
                    self._clock(),
                )
            entries = _formation(db, app.id, process_types)
            summary = ", ".join(f"{e.type}={e.quantity}:{e.size}" for e in entries)
            return entries, summary

        entries, summary = await self._store.write(apply)
        self._hub.emit(app_name, f"Scale to {summary} by {user}")
        await self._reconciler.reconcile_app(app_name)
        return entries

    async def restart(self, app_name: str, target: str, user: str) -> None:
        def apply(db: Database) -> int:
            app = find_app(db, app_name)
            sql = (
                "SELECT type, idx, release_version, size, id FROM dynos WHERE app_id = ?"
                " AND desired = 'run' AND oneoff = 0"
            )
            params: list = [app.id]
            if target and "." in target:
                ptype, _, idx = target.partition(".")
                if not idx.isdigit():
                    raise InvalidInput(f"{target!r} is not a dyno name like web.1.")
                sql += " AND type = ? AND idx = ?"
                params += [ptype, int(idx)]
            elif target:
                sql += " AND type = ?"
                params.append(target)
            rows = db.execute(sql, params).fetchall()
            if target and not rows:
                raise NotFound(f"No dyno or process type {target!r} is running on {app_name}.")
            if not app.preboot:
                # Never two copies: stop them; the reconciler starts each slot again once empty.
                db.conn.executemany(
                    "UPDATE dynos SET desired = 'stop' WHERE id = ?", [(r[4],) for r in rows]
                )
                return len(rows)
            # One replacement per slot, even if the slot is mid-replacement already.
            slots = {(t, i): (t, i, app.current_release or r, s) for t, i, r, s, _ in rows}
            _insert_replacements(db, app.id, list(slots.values()), self._clock())
            return len(slots)

        await self._store.write(apply)
        self._hub.emit(app_name, f"Restart {target or 'all dynos'} by {user}")
        await self._reconciler.reconcile_app(app_name)

    async def stop(self, app_name: str, target: str, user: str) -> None:
        """Stops one dyno. A formation dyno's slot is then filled again, as on Heroku."""
        ptype, _, idx = target.partition(".")
        if not idx.isdigit():
            raise InvalidInput(f"{target!r} is not a dyno name like web.1 or run.3.")

        def apply(db: Database) -> str | None:
            app = find_app(db, app_name)
            row = db.execute(
                "SELECT id, node_id FROM dynos WHERE app_id = ? AND type = ? AND idx = ?"
                " AND desired = 'run' ORDER BY seq DESC LIMIT 1",
                (app.id, ptype, int(idx)),
            ).fetchone()
            if row is None:
                raise NotFound(f"No dyno {target} is running on {app_name}.")
            db.execute("UPDATE dynos SET desired = 'stop' WHERE id = ?", (row[0],))
            return row[1]

        node_id = await self._store.write(apply)
        self._hub.emit(app_name, f"Stop {target} by {user}")
        if node_id:
            await self._reconciler.push_node(node_id)
        await self._reconciler.reconcile_app(app_name)

    async def dynos(self, app_name: str) -> list[Dyno]:
        def read(db: Database) -> list[dict]:
            app = find_app(db, app_name)
            rows = list(
                db.query(
                    "SELECT d.*, n.name AS node_name, n.address AS node_address FROM dynos d"
                    " LEFT JOIN nodes n ON n.id = d.node_id WHERE d.app_id = ?"
                    " ORDER BY d.type, d.idx, d.seq",
                    (app.id,),
                )
            )
            types: dict[int, dict[str, str]] = {}
            for row in rows:
                release = row["release_version"]
                if release not in types:
                    types[release] = _process_types(db, app.id, release)
                row["command"] = row["command"] or types[release].get(row["type"], "")
            return rows

        rows = await self._store.read(read)
        result = []
        for row in rows:
            status = self._fleet.dyno_status(row["id"])
            if status is None and row["desired"] == "stop":
                continue  # already gone; the row is forgotten at the node's next report
            session = self._fleet.session(row["node_id"]) if row["node_id"] else None
            node_name = session.name if session else (row["node_name"] or "")
            host = session.inventory.address if session else (row["node_address"] or "")
            dyno = Dyno(
                id=row["id"],
                app=app_name,
                name=f"{row['type']}.{row['idx']}",
                type=row["type"],
                release=row["release_version"],
                node=node_name,
                command=row["command"],
                size=row["size"],
            )
            if status is not None:
                dyno.state = status.state
                dyno.restarts = status.restarts
                dyno.message = status.message
                dyno.state_changed_at.CopyFrom(timestamp(status.state_changed_us / 1e6))
                if status.address or (status.port and host):
                    # What reaches it: a private network's own address, on a loopback node.
                    dyno.address = dial_address(status, host)
            else:
                dyno.state = DynoState.DYNO_STATE_PENDING
                dyno.state_changed_at.CopyFrom(timestamp(row["created_at"]))
                dyno.message = self._reconciler.pending_reasons.get(row["id"]) or (
                    f"waiting for node {node_name} to start it" if node_name else "not placed yet"
                )
            result.append(dyno)
        return result
