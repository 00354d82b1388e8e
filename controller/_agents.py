"""What the controller does with its agents: joining, sessions, their reports and their logs."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

import trio
from sqlite_utils import Database

from waka.controller._bridge import next_request
from waka.controller._ca import CertificateAuthority
from waka.controller._deploys import Deployer
from waka.controller._errors import InvalidInput
from waka.controller._fleet import AgentSession, Fleet
from waka.controller._liveness import DRAINING_LEFT
from waka.controller._logs import MAX_LINE_BYTES, LogHub, split_long
from waka.controller._logstore import LogStore
from waka.controller._oneoff import OneOffs
from waka.controller._reconcile import Reconciler
from waka.controller._store import Store
from waka.controller._tokens import TokenBook
from waka.v1.agent_pb2 import (
    AgentMessage,
    ControllerMessage,
    Hello,
    Inventory,
    JoinResponse,
    LeaveReply,
    LogAck,
    NodeStatus,
)
from waka.v1.common_pb2 import LogBatch, LogLine

log = logging.getLogger("waka.controller")


async def _nothing(_app: str) -> None:
    return None


async def _nowhere_to_go(_node_id: str) -> bool:
    return False


async def _nothing_at_all() -> None:
    return None


# How long ingest lets lines gather before storing them. A sync costs a worker-thread round trip
# and an SQLite commit; a dyno printing steadily is read about a hundred times a second, and one
# sync per 20 ms covers several of those batches (at 1,000 one-line writes a second, about a fifth
# less CPU). Tails never wait for it: lines are published as they arrive.
STORE_BEHIND_DELAY = 0.02

# How many of each app's newest stored lines are read at start to recover stream cursors: far
# more than one sync (the lines between a flush and its cursor commit) ever covers.
RECOVERED_LINES_PER_APP = 20_000


class LogIngest:
    """Takes batches from agents into the log hub, dropping replays by per-node sequence number
    and per-dyno-stream file offset.

    Live and durable are separate steps. `take` publishes a batch's new lines at once (tails see
    them straight away) and queues them for the disk; `sync` later stores every line taken so
    far and then records the cursors (each node's highest seq, each stream's highest offset) in
    SQLite, in that order. An agent's lines count as stored only after a sync, so after a
    controller crash it sends again exactly the lines not stored, and the restored cursors drop
    what was. One sync covers every batch taken before it, from every node: under load the
    disk write and the SQLite commit are paid per group of batches, not per batch.
    """

    def __init__(
        self, hub: LogHub, store: Store | None = None, log_store: LogStore | None = None
    ) -> None:
        self._hub = hub
        self._store = store
        self._log_store = log_store
        # As published (ahead of the disk), and as stored.
        self._last_seq: dict[str, int] = {}
        self._stream_offsets: dict[str, int] = {}
        self._stored_seq: dict[str, int] = {}
        # Cursors that moved since the last sync.
        self._moved_seq: dict[str, int] = {}
        self._moved_streams: dict[str, int] = {}
        # Batches taken, and how many of them the last sync covered.
        self._taken = 0
        self._synced = 0
        self._syncing = trio.Lock()

    async def load(self) -> None:
        if self._store is not None:

            def read(db: Database) -> tuple[list, list]:
                return (
                    db.execute("SELECT node_id, seq FROM log_cursors").fetchall(),
                    db.execute("SELECT stream, offset FROM log_streams").fetchall(),
                )

            cursors, streams = await self._store.read(read)
            self._last_seq.update({node: int(seq) for node, seq in cursors})
            self._stored_seq.update(self._last_seq)
            self._stream_offsets.update({stream: int(end) for stream, end in streams})
        if self._log_store is not None:
            # Lines are on disk before their cursors are committed, so a crash in between leaves
            # stored lines the cursors do not cover; their agents would send them again. The
            # stored lines themselves say how far each dyno's output stream got.
            stored = await self._log_store.stream_offsets(RECOVERED_LINES_PER_APP)
            for stream, end in stored.items():
                if end > self._stream_offsets.get(stream, 0):
                    self._stream_offsets[stream] = self._moved_streams[stream] = end

    def open_stream(self, node_id: str) -> LogStream:
        """The controller's end of one agent's ShipLogs call (see `LogStream`)."""
        return LogStream(self, node_id)

    async def ingest(self, node_id: str, batch: LogBatch) -> int:
        """Takes a batch and waits until it is stored; returns the node's stored seq."""
        self.take(node_id, batch)
        await self.sync()
        return self.stored(node_id)

    def stored(self, node_id: str) -> int:
        """Every line of the node with seq up to this is on disk and its cursor committed."""
        return self._stored_seq.get(node_id, 0)

    def take(self, node_id: str, batch: LogBatch) -> int:
        """Publishes the batch's new lines (replays are dropped) and queues them for the disk;
        returns the highest seq in the batch. They are stored by the next `sync`."""
        last = self._last_seq.get(node_id, 0)
        offsets = self._stream_offsets
        moved = self._moved_streams
        lines = batch.lines
        fresh: list[LogLine] = []
        keep = fresh.append
        # Whether `fresh` is the whole batch, of one app: the usual case, published (and
        # stored, and sent to tails) as the batch itself, with no per-line copy.
        app = lines[0].app if lines else ""
        whole = True
        for line in lines:
            seq = line.seq
            if seq:
                if seq <= last:
                    whole = False
                    continue
                last = seq  # an agent's seqs rise through its batches
            stream = line.stream
            if stream:
                # A line a restarted agent read again: stored already under an older seq.
                end = line.offset
                if end <= offsets.get(stream, 0):
                    whole = False
                    continue
                offsets[stream] = moved[stream] = end
            if whole and line.app != app:
                whole = False
            text = line.text
            # A str of at most MAX_LINE_BYTES // 4 characters cannot exceed the byte bound.
            if len(text) > MAX_LINE_BYTES // 4 and len(text.encode()) > MAX_LINE_BYTES:
                whole = False
                fresh.extend(
                    LogLine(
                        time_us=line.time_us,
                        app=line.app,
                        source=line.source,
                        dyno=line.dyno,
                        text=part,
                        seq=line.seq,
                    )
                    for part in split_long(text)
                )
            else:
                keep(line)
        if last != self._last_seq.get(node_id, 0):
            self._last_seq[node_id] = self._moved_seq[node_id] = last
        self._taken += 1
        if whole and fresh:
            self._hub.publish_app(app, fresh, batch)
        elif fresh:
            self._hub.publish(fresh)
        return last

    async def sync(self) -> None:
        """Returns once every batch taken before the call is stored: its lines on disk, then
        the cursors that drop their replays committed."""
        target = self._taken
        async with self._syncing:
            if self._synced >= target:  # a sync that started meanwhile covered it
                return
            taken = self._taken
            nodes, self._moved_seq = self._moved_seq, {}
            streams, self._moved_streams = self._moved_streams, {}
            try:
                if self._log_store is not None:
                    await self._log_store.flush()
                if self._store is not None and (nodes or streams):
                    await self._store.write(partial(_record_cursors, nodes, streams, time.time()))
            except BaseException:
                # Not committed: the next sync records them (with anything newer).
                for node, seq in nodes.items():
                    self._moved_seq[node] = max(seq, self._moved_seq.get(node, 0))
                for stream, end in streams.items():
                    self._moved_streams[stream] = max(end, self._moved_streams.get(stream, 0))
                raise
            self._synced = taken
            self._stored_seq.update(nodes)


def _record_cursors(
    nodes: dict[str, int], streams: dict[str, int], now: float, db: Database
) -> None:
    db.conn.executemany(
        "INSERT INTO log_cursors (node_id, seq) VALUES (?, ?) ON CONFLICT"
        " (node_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
        list(nodes.items()),
    )
    db.conn.executemany(
        "INSERT INTO log_streams (stream, offset, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (stream) DO UPDATE SET offset = MAX(offset,"
        " excluded.offset), updated_at = excluded.updated_at",
        [(stream, end, now) for stream, end in streams.items()],
    )


class LogStream:
    """One agent's ShipLogs call: batches are published as they arrive, stored behind them.

    `pump` (a trio task) reads the agent's batches and takes each at once; a second task syncs
    whenever there is something new. The answers (`next_ack`) say how far lines are received
    and how far stored, whenever either moves: the agent's window of batches in flight counts
    against the first, so a slow disk or SQLite commit never holds up the live stream, and it
    forgets lines only on the second.
    """

    def __init__(self, ingest: LogIngest, node_id: str) -> None:
        self._ingest = ingest
        self._node_id = node_id
        self._received = 0
        self._answered = (0, 0)
        self._changed = trio.Event()
        self._taken = trio.Event()
        self._scope = trio.CancelScope()
        self.closed = False

    async def pump(self, requests: Iterator[LogBatch]) -> None:
        """Reads the agent's batches until its stream ends or breaks, or `close` is called."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._store_behind)
                    while (batch := await next_request(requests)) is not None:
                        received = self._ingest.take(self._node_id, batch)
                        self._received = max(self._received, received)
                        self._taken.set()
                        self._changed.set()
                    nursery.cancel_scope.cancel()
        except Exception:
            # Spawned in the server's nursery: an error ends this call (the agent reconnects
            # and sends again what is not stored), never the controller.
            log.exception("log stream of node %s failed", self._node_id)
        finally:
            self.close()

    async def _store_behind(self) -> None:
        while True:
            await self._taken.wait()
            await trio.sleep(STORE_BEHIND_DELAY)
            self._taken = trio.Event()
            await self._ingest.sync()
            self._changed.set()

    async def next_ack(self) -> LogAck | None:
        """The next answer for the agent, once received or stored has moved; None once the
        stream is over."""
        while True:
            state = (self._ingest.stored(self._node_id), self._received)
            if state != self._answered:
                self._answered = state
                return LogAck(seq=state[0], received=state[1])
            if self.closed:
                return None
            await self._changed.wait()
            self._changed = trio.Event()

    def close(self) -> None:
        self.closed = True
        self._scope.cancel()
        self._changed.set()


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
        # Told when an agent connects, so its node is schedulable now, not at the next pass of
        # the node monitor (else `waka nodes` shows ready while new dynos avoid the node).
        self.on_node_connected: Callable[[], Awaitable[None]] = _nothing_at_all
        # Moves a leaving node's dynos elsewhere; whether any are moving (Nodes.leave).
        self.on_node_leaving: Callable[[str], Awaitable[bool]] = _nowhere_to_go
        # Sessions of leaving nodes waiting for their dynos to move, by node.
        self._leaving: dict[str, AgentSession] = {}

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
            # Back after a deliberate stop: schedulable again (an operator's cordon stays).
            db.execute(
                "UPDATE nodes SET cordoned = 0, draining = 0 WHERE id = ? AND draining = ?",
                (node_id, DRAINING_LEFT),
            )
            (name,) = db.execute("SELECT name FROM nodes WHERE id = ?", (node_id,)).fetchone()
            return name

        name = await self._store.write(touch)
        session = self._fleet.attach(node_id, name, hello.inventory)
        session.slugs = set(hello.slugs)
        self._fleet.update_status(session, hello.status)
        await self.on_node_connected()
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
        elif kind == "leaving":
            log.info("node %s is leaving: moving its dynos", session.name)
            self._leaving[session.node_id] = session
            moving = await self.on_node_leaving(session.node_id)
            if not moving:
                self._release_leaving()
            # Released meanwhile (another node found nowhere to go): nothing moves after all.
            moving = moving and self._leaving.get(session.node_id) is session
            session.send(ControllerMessage(leave_reply=LeaveReply(moving=moving)))

    def _release_leaving(self) -> None:
        """A node is leaving with no other node left to take its dynos: neither is there one
        for the nodes leaving with it (a whole fleet stopping at once), so they stop their dynos
        now instead of waiting out their leave timeout."""
        for waiting in self._leaving.values():
            if not waiting.closed:
                log.info("node %s: no node is left to take its dynos", waiting.name)
                waiting.send(ControllerMessage(leave_reply=LeaveReply(moving=False)))
        self._leaving.clear()

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
        if self._leaving.get(session.node_id) is session:
            del self._leaving[session.node_id]
        if self._fleet.detach(session):
            self._deployer.on_node_lost(session.node_id)
            self._oneoffs.node_lost(session.node_id)
            await self._store.write(
                lambda db: db.execute(
                    "UPDATE nodes SET last_seen = ? WHERE id = ?", (self._clock(), session.node_id)
                )
            )
            self._reconciler.kick()
