"""What the controller does with its agents: joining, sessions, their reports and their logs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import trio
from sqlite_utils import Database

from waka.controller._bridge import next_request
from waka.controller._ca import CertificateAuthority
from waka.controller._deploys import Deployer
from waka.controller._errors import InvalidInput
from waka.controller._fleet import AgentSession, Fleet
from waka.controller._logs import LogHub, split_long
from waka.controller._logstore import LogStore
from waka.controller._oneoff import OneOffs
from waka.controller._reconcile import Reconciler
from waka.controller._store import Store
from waka.controller._tokens import TokenBook
from waka.v1.agent_pb2 import AgentMessage, Hello, Inventory, JoinResponse, NodeStatus
from waka.v1.common_pb2 import LogBatch, LogLine


async def _nothing(_app: str) -> None:
    return None


class LogIngest:
    """Takes batches from agents into the log hub, dropping replays by per-node sequence number.

    A batch is acknowledged only once its lines are on disk and the node's cursor (the highest
    sequence number stored) is recorded, so after a controller crash the agent resends exactly
    the lines that were not stored, and nothing twice.
    """

    def __init__(
        self, hub: LogHub, store: Store | None = None, log_store: LogStore | None = None
    ) -> None:
        self._hub = hub
        self._store = store
        self._log_store = log_store
        self._last_seq: dict[str, int] = {}
        self._stream_offsets: dict[str, int] = {}

    async def load(self) -> None:
        if self._store is not None:

            def read(db: Database) -> tuple[list, list]:
                return (
                    db.execute("SELECT node_id, seq FROM log_cursors").fetchall(),
                    db.execute("SELECT stream, offset FROM log_streams").fetchall(),
                )

            cursors, streams = await self._store.read(read)
            self._last_seq.update({node: int(seq) for node, seq in cursors})
            self._stream_offsets.update({stream: int(end) for stream, end in streams})

    async def ingest(self, node_id: str, batch: LogBatch) -> int:
        before = self._last_seq.get(node_id, 0)
        last, streams = self._publish(node_id, batch)
        if last > before:
            if self._log_store is not None:
                await self._log_store.flush()
            if self._store is not None:
                now = time.time()

                def record(db: Database) -> None:
                    db.execute(
                        "INSERT INTO log_cursors (node_id, seq) VALUES (?, ?) ON CONFLICT"
                        " (node_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
                        (node_id, last),
                    )
                    db.conn.executemany(
                        "INSERT INTO log_streams (stream, offset, updated_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (stream) DO UPDATE SET offset = MAX(offset,"
                        " excluded.offset), updated_at = excluded.updated_at",
                        [(stream, end, now) for stream, end in streams.items()],
                    )

                await self._store.write(record)
        return last

    def _publish(self, node_id: str, batch: LogBatch) -> tuple[int, dict[str, int]]:
        last = self._last_seq.get(node_id, 0)
        offsets = self._stream_offsets
        advanced: dict[str, int] = {}
        fresh: list[LogLine] = []
        for line in batch.lines:
            if line.seq and line.seq <= last:
                continue
            last = max(last, line.seq)
            if line.stream:
                # A line a restarted agent read again: stored already under an older seq.
                if line.offset <= offsets.get(line.stream, 0):
                    continue
                offsets[line.stream] = advanced[line.stream] = line.offset
            if len(line.text.encode()) > 10_000:
                fresh.extend(
                    LogLine(
                        time_us=line.time_us,
                        app=line.app,
                        source=line.source,
                        dyno=line.dyno,
                        text=part,
                        seq=line.seq,
                    )
                    for part in split_long(line.text)
                )
            else:
                fresh.append(line)
        self._last_seq[node_id] = last
        if fresh:
            self._hub.publish(fresh)
        return last, advanced


class Agents:
    def __init__(
        self,
        store: Store,
        tokens: TokenBook,
        fleet: Fleet,
        reconciler: Reconciler,
        deployer: Deployer,
        oneoffs: OneOffs,
        ca: CertificateAuthority,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._fleet = fleet
        self._reconciler = reconciler
        self._deployer = deployer
        self._oneoffs = oneoffs
        self._ca = ca
        self._clock = clock
        # Where agents reach the agent port (set once it listens).
        self.agent_endpoint = ""
        # Told about every app whose dynos changed state (the router's table follows).
        self.on_app_changed: Callable[[str], Awaitable[None]] = _nothing

    async def join(
        self, join_token: str, name: str, inventory: Inventory, csr: bytes
    ) -> JoinResponse:
        wanted = name.strip() or "node"
        if not all(c.isalnum() or c in "-_." for c in wanted) or len(wanted) > 63:
            raise InvalidInput(
                f"Invalid node name {wanted!r}: use letters, digits, '-', '_' and '.'."
            )
        node_id = uuid.uuid4().hex
        certificate = self._ca.sign_node(csr, node_id)

        def insert(db: Database) -> str:
            chosen, n = wanted, 1
            while db.execute("SELECT 1 FROM nodes WHERE name = ?", (chosen,)).fetchone():
                n += 1
                chosen = f"{wanted}-{n}"
            now = self._clock()
            db.execute(
                "INSERT INTO nodes (id, name, created_at, address, inventory)"
                " VALUES (?, ?, ?, ?, ?)",
                (node_id, chosen, now, inventory.address, json.dumps({})),
            )
            TokenBook.spend(db, join_token)
            self._tokens.load(db)
            return chosen

        chosen = await self._store.write(insert)
        return JoinResponse(
            node_id=node_id,
            name=chosen,
            certificate=certificate,
            ca_certificate=self._ca.cert_pem,
            agent_endpoint=self.agent_endpoint,
        )

    async def connected(self, node_id: str, hello: Hello) -> AgentSession:
        def touch(db: Database) -> str:
            db.execute(
                "UPDATE nodes SET last_seen = ?, address = ? WHERE id = ?",
                (self._clock(), hello.inventory.address, node_id),
            )
            (name,) = db.execute("SELECT name FROM nodes WHERE id = ?", (node_id,)).fetchone()
            return name

        name = await self._store.write(touch)
        session = self._fleet.attach(node_id, name, hello.inventory)
        session.slugs = set(hello.slugs)
        self._fleet.update_status(session, hello.status)
        await self._reconciler.push_node(node_id)
        self._reconciler.kick()
        return session

    async def pump(self, session: AgentSession, requests: Iterator[AgentMessage]) -> None:
        """Reads the agent's messages until its stream ends, then forgets the session."""
        try:
            while not session.closed:
                message = await next_request(requests)
                if message is None:
                    break
                await self._handle(session, message)
        finally:
            with trio.CancelScope(shield=True):
                await self.disconnected(session)

    async def _handle(self, session: AgentSession, message: AgentMessage) -> None:
        self._fleet.heard_from(session.node_id)
        kind = message.WhichOneof("message")
        if kind == "status":
            await self._status(session, message.status)
        elif kind == "build_output":
            self._deployer.on_output(
                message.build_output.build_id, list(message.build_output.lines)
            )
        elif kind == "build_result":
            self._deployer.on_result(message.build_result.build_id, message.build_result)

    async def _status(self, session: AgentSession, status: NodeStatus) -> None:
        before = {d.id: (d.app, d.state, d.port, d.restarts) for d in session.dynos.values()}
        self._fleet.update_status(session, status)
        after = {d.id: (d.app, d.state, d.port, d.restarts) for d in session.dynos.values()}
        # Apps with a dyno that changed state, appeared or went away.
        changed = {v[0] for k, v in after.items() if before.get(k) != v}
        changed |= {v[0] for k, v in before.items() if k not in after}
        self._oneoffs.observe(status.dynos)
        await self._reconciler.node_reported(session.node_id, changed)
        for app in changed:
            await self.on_app_changed(app)

    async def disconnected(self, session: AgentSession) -> None:
        if self._fleet.detach(session):
            self._deployer.on_node_lost(session.node_id)
            self._oneoffs.node_lost(session.node_id)
            await self._store.write(
                lambda db: db.execute(
                    "UPDATE nodes SET last_seen = ? WHERE id = ?", (self._clock(), session.node_id)
                )
            )
            self._reconciler.kick()
