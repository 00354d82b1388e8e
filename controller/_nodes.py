"""The fleet as operators see it: node states over time, join tokens, cordon, drain, remove.

A monitor task re-evaluates every node once a second with the liveness policy. A node that goes
`down` has its dynos replaced elsewhere; one that comes back gets the full assignment again, which
no longer includes the replaced dynos, so exactly the desired number remains.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import trio
from sqlite_utils import Database

from waka.controller._convert import timestamp
from waka.controller._errors import InvalidInput, NotFound
from waka.controller._fleet import AgentSession, Fleet
from waka.controller._liveness import DRAINING_LEFT, Liveness, node_state
from waka.controller._oneoff import OneOffs
from waka.controller._reconcile import (
    APP_PRIVATE_NETWORK,
    Reconciler,
    next_dyno_seq,
)
from waka.controller._store import Store
from waka.controller._tokens import Identity, TokenBook, new_join_token
from waka.v1.agent_pb2 import Assignment, ControllerMessage
from waka.v1.platform_pb2 import JoinToken, Node

log = logging.getLogger("waka.controller")

CHECK_INTERVAL = 1.0


class Nodes:
    def __init__(
        self,
        store: Store,
        tokens: TokenBook,
        fleet: Fleet,
        reconciler: Reconciler,
        oneoffs: OneOffs,
        *,
        policy: Liveness = Liveness(),  # noqa: B008
        ca_fingerprint: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._fleet = fleet
        self._reconciler = reconciler
        self._oneoffs = oneoffs
        self._policy = policy
        self._ca_fingerprint = ca_fingerprint
        self._clock = clock
        # The monitor and agents connecting both check: one at a time, so a change is acted on once.
        self._checking = trio.Lock()
        # Nodes leaving together are answered one after another, each seeing the ones before
        # it as leaving: the last has nowhere to move its dynos (and says so for all).
        self._leaving = trio.Lock()

    # ------------------------------------------------------------ liveness

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = self._clock()
        for node_id, *_ in await self._store.read(_node_rows):
            # After a controller restart every node gets the full grace to reconnect.
            self._fleet.heard.setdefault(node_id, started)
        task_status.started()
        while True:
            await self.check()
            await trio.sleep(CHECK_INTERVAL)

    async def check(self) -> None:
        async with self._checking:
            await self._check()

    async def _check(self) -> None:
        now = self._clock()
        for node_id, name, cordoned, draining in await self._store.read(_node_rows):
            session = self._fleet.session(node_id)
            heard = self._fleet.heard.get(node_id)
            state = node_state(
                now,
                heard,
                connected=session is not None and not session.closed,
                cordoned=bool(cordoned),
                draining=bool(draining),
                policy=self._policy,
            )
            old = self._fleet.states.get(node_id)
            if state == old:
                continue
            self._fleet.states[node_id] = state
            if old is not None:
                log.info("node %s: %s -> %s%s", name, old, state, _why(state, session, heard, now))
            if state == "down":
                self._oneoffs.node_lost(node_id)
                await self._reconciler.node_down(node_id)
            elif old in {"down", "suspect"} or state == "ready":
                # Back, or newly schedulable: pending dynos may fit now.
                self._reconciler.kick()

    # ------------------------------------------------------------ listing

    async def list(self) -> list[Node]:
        def read(db: Database) -> tuple[list[tuple], dict[str, int], dict[str, int]]:
            committed, counts = self._reconciler.node_usage(db)
            rows = db.execute(
                "SELECT id, name, address, last_seen, cordoned, draining FROM nodes ORDER BY name"
            ).fetchall()
            return rows, counts, committed

        rows, counts, committed = await self._store.read(read)
        nodes = []
        now = self._clock()
        for node_id, name, address, last_seen, cordoned, draining in rows:
            session = self._fleet.session(node_id)
            inventory = session.inventory if session else None
            heard = self._fleet.heard.get(node_id) or last_seen or 0
            state = node_state(
                now,
                self._fleet.heard.get(node_id),
                connected=session is not None and not session.closed,
                cordoned=bool(cordoned),
                draining=bool(draining),
                policy=self._policy,
            )
            node = Node(
                name=name,
                id=node_id,
                address=(inventory.address if inventory else "") or address,
                state=state,
                dynos=counts.get(node_id, 0),
                memory_committed_mb=committed.get(node_id, 0),
                unknown_dynos=len(self._reconciler.unknown.get(node_id, [])),
            )
            if heard:
                node.last_seen.CopyFrom(timestamp(heard))
            if inventory is not None:
                node.memory_total_mb = inventory.memory_total_mb
                node.memory_free_mb = inventory.memory_free_mb
                node.disk_free_mb = inventory.disk_free_mb
                node.cpus = inventory.cpus
                node.load1 = inventory.load1
                node.version = inventory.version
                node.isolated = inventory.isolated
            nodes.append(node)
        return nodes

    async def get(self, name: str) -> Node:
        for node in await self.list():
            if node.name == name:
                return node
        raise NotFound(f"No node named {name!r}; `waka nodes` lists them.")

    # ------------------------------------------------------------ tokens

    async def create_join_token(self, ttl_seconds: int, uses: int, user: str) -> JoinToken:
        if ttl_seconds < 0 or uses < 0:
            raise InvalidInput("A join token's lifetime and uses cannot be negative.")
        token = new_join_token(self._ca_fingerprint)
        now = self._clock()
        expires = now + ttl_seconds if ttl_seconds else None

        def insert(db: Database) -> None:
            TokenBook.insert(
                db,
                token,
                Identity("join", f"by {user}"),
                now=now,
                expires_at=expires,
                uses_left=uses or None,
            )
            self._tokens.load(db)

        await self._store.write(insert)
        reply = JoinToken(token=token, uses=uses)
        if expires:
            reply.expires_at.CopyFrom(timestamp(expires))
        return reply

    # ------------------------------------------------------------ admin

    async def _node_id(self, name: str) -> str:
        row = await self._store.read(
            lambda db: db.execute("SELECT id FROM nodes WHERE name = ?", (name,)).fetchone()
        )
        if row is None:
            raise NotFound(f"No node named {name!r}; `waka nodes` lists them.")
        return str(row[0])

    async def _set_flags(self, name: str, *, cordoned: bool, draining: bool) -> str:
        node_id = await self._node_id(name)
        await self._store.write(
            lambda db: db.execute(
                "UPDATE nodes SET cordoned = ?, draining = ? WHERE id = ?",
                (int(cordoned), int(draining), node_id),
            )
        )
        await self.check()
        return node_id

    async def cordon(self, name: str) -> Node:
        await self._set_flags(name, cordoned=True, draining=False)
        return await self.get(name)

    async def uncordon(self, name: str) -> Node:
        await self._set_flags(name, cordoned=False, draining=False)
        return await self.get(name)

    async def drain(self, name: str) -> Node:
        """Every formation dyno on the node gets a replacement elsewhere; each old one stops
        once its replacement is up (the reconciler's usual rule for replacements)."""
        node_id = await self._set_flags(name, cordoned=True, draining=True)
        await self._replace_dynos(node_id)
        return await self.get(name)

    async def leave(self, node_id: str) -> bool:
        """The node's agent is stopping deliberately: drain it like `nodes:drain`, marked as a
        leave (DRAINING_LEFT) so that the node is schedulable again when its agent returns.
        False when no other node could take its dynos (then they simply stop with the agent)."""
        async with self._leaving:
            others = [
                s.node_id
                for s in self._fleet.sessions()
                if s.node_id != node_id and not s.closed and self._fleet.schedulable(s.node_id)
            ]
            if not others:
                return False
            # A node the operator cordoned or drained keeps that state; its dynos move all the
            # same.
            await self._store.write(
                lambda db: db.execute(
                    "UPDATE nodes SET cordoned = 1, draining = ? WHERE id = ? AND cordoned = 0",
                    (DRAINING_LEFT, node_id),
                )
            )
            await self.check()
        return await self._replace_dynos(node_id) > 0

    async def _replace_dynos(self, node_id: str) -> int:
        now = self._clock()

        def replace(db: Database) -> list[tuple]:
            rows = db.execute(
                "SELECT d.app_id, d.type, d.idx, d.release_version, d.size, a.name FROM dynos d"
                " JOIN apps a ON a.id = d.app_id WHERE d.node_id = ? AND d.desired = 'run'"
                " AND d.oneoff = 0",
                (node_id,),
            ).fetchall()
            seq = next_dyno_seq(db)
            for app_id, ptype, idx, release, size, _ in rows:
                db.execute(
                    "INSERT INTO dynos (id, app_id, type, idx, release_version, node_id,"
                    " desired, created_at, seq, size, private_network)"
                    f" VALUES (?, ?, ?, ?, ?, NULL, 'run', ?, ?, ?, {APP_PRIVATE_NETWORK})",
                    (uuid.uuid4().hex, app_id, ptype, idx, release, now, seq, size, app_id),
                )
                seq += 1
            return rows

        rows = await self._store.write(replace)
        for app in sorted({r[5] for r in rows}):
            await self._reconciler.reconcile_app(app)
        return len(rows)

    async def adopt(self, name: str) -> Node:
        node_id = await self._node_id(name)
        self._fleet.adopting.add(node_id)
        await self._reconciler.push_node(node_id)
        return await self.get(name)

    async def remove(self, name: str) -> None:
        node_id = await self._node_id(name)
        session = self._fleet.session(node_id)
        if session is not None:
            # Its dynos stop before its credential goes; then the session ends.
            session.send(ControllerMessage(assignment=Assignment()))

        def forget(db: Database) -> list[str]:
            apps = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT a.name FROM dynos d JOIN apps a ON a.id = d.app_id"
                    " WHERE d.node_id = ?",
                    (node_id,),
                )
            ]
            db.execute("DELETE FROM dynos WHERE node_id = ?", (node_id,))
            db.execute("DELETE FROM dyno_tombstones WHERE node_id = ?", (node_id,))
            db.execute("DELETE FROM tokens WHERE kind = 'node' AND subject = ?", (node_id,))
            db.execute("DELETE FROM nodes WHERE id = ?", (node_id,))
            self._tokens.load(db)
            return apps

        apps = await self._store.write(forget)
        if session is not None:
            self._fleet.detach(session)
        self._fleet.states.pop(node_id, None)
        self._fleet.heard.pop(node_id, None)
        self._fleet.adopting.discard(node_id)
        for app in apps:
            await self._reconciler.reconcile_app(app)


def _node_rows(db: Database) -> list[tuple]:
    return db.execute("SELECT id, name, cordoned, draining FROM nodes ORDER BY name").fetchall()


def _why(state: str, session: AgentSession | None, heard: float | None, now: float) -> str:
    """Why a node is suspect or down, for the log line that says so."""
    if state not in {"suspect", "down"}:
        return ""
    silent = f"silent for {now - heard:.1f}s" if heard is not None else "never heard from"
    if session is None or session.closed:
        return f" (disconnected, {silent})"
    return f" ({silent})"
