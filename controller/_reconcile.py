"""Makes what runs meet what should run: the reconcile loop and the assignments it sends.

Desired state (formation × current release, as dyno rows) lives in SQLite; actual state is what the
agents last reported. A reconcile is triggered by events (a release, a scale, a restart, an agent's
status changing) and by a periodic full resync, and it is idempotent: running it twice changes
nothing the second time. Each agent is always sent the complete list of dynos it should run.

At fleet scale (200 nodes, 10,000 dynos) the costs that matter are per dyno and per node, not per
pass: placement keeps node loads in a heap for the pass (`Placer`), committed memory is counted
only when something is placed, nodes touched by a burst of passes get one assignment at its end
rather than one per pass, and the periodic resync sends nothing to a node whose assignment has
not changed since it was last sent and which reports exactly what it was sent.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import trio
from sqlite_utils import Database

from waka.controller._fleet import Fleet
from waka.controller._fleet_assignments import Assignments, NodeAssignment
from waka.controller._logs import LogHub
from waka.controller._placement import DynoRow, NodeInfo, Placer, plan_app
from waka.controller._sizes import DEFAULT_SIZES
from waka.controller._store import Store
from waka.v1.agent_pb2 import DynoSpec, DynoStatus
from waka.v1.common_pb2 import DynoSize, DynoState

_ENDED = frozenset({DynoState.DYNO_STATE_DOWN, DynoState.DYNO_STATE_CRASHED})
STOP_GRACE_SECONDS = 30
BOOT_TIMEOUT_SECONDS = 60
# While passes queue up for the lock, pushes wait for the last of them, but never longer than this.
MAX_PUSH_DELAY = 0.5


@dataclass(frozen=True)
class NodeView:
    node_id: str
    name: str
    capacity_mb: int
    slugs: frozenset[str]
    schedulable: bool = True


@dataclass(frozen=True)
class FleetView:
    """What the agents reported, taken on the trio thread for a worker thread to read."""

    nodes: tuple[NodeView, ...]
    # Per node, the dynos it last reported: each session's own dict, which a status replaces and
    # never changes in place (Fleet.update_status), so holding it is a snapshot. Copying every
    # dyno's state instead cost milliseconds on every pass at 10,000 dynos.
    reports: Mapping[str, Mapping[str, DynoStatus]] = field(default_factory=dict)

    def state(self, dyno: DynoRow) -> int | None:
        """The dyno's state as its node reported it: a dyno runs only on the node it was
        assigned to (a replacement elsewhere is a new dyno), so that is the one to ask."""
        report = self.reports.get(dyno.node_id) if dyno.node_id else None
        status = report.get(dyno.id) if report is not None else None
        return status.state if status is not None else None


@dataclass(frozen=True)
class AppSnapshot:
    id: str
    name: str
    release: int
    process_types: dict[str, str]
    formation: dict[str, int]
    sizes: dict[str, str]
    rows: list[DynoRow]
    preboot: bool = True
    stopping: frozenset[tuple[str, int]] = frozenset()


def _load_snapshot(db: Database, app_name: str) -> AppSnapshot | None:
    app = db.execute(
        "SELECT id, name, current_release, preboot FROM apps WHERE name = ?", (app_name,)
    ).fetchone()
    if app is None:
        return None
    app_id, name, release, preboot = app
    process_types: dict[str, str] = {}
    if release:
        row = db.execute(
            "SELECT process_types FROM releases WHERE app_id = ? AND version = ?", (app_id, release)
        ).fetchone()
        process_types = json.loads(row[0]) if row else {}
    formation: dict[str, int] = {}
    sizes: dict[str, str] = {}
    for ptype, quantity, size in db.execute(
        "SELECT type, quantity, size FROM formation WHERE app_id = ?", (app_id,)
    ):
        formation[ptype] = quantity
        sizes[ptype] = size
    rows = [
        DynoRow(id=r[0], type=r[1], idx=r[2], release=r[3], node_id=r[4], seq=r[5], size=r[6])
        for r in db.execute(
            "SELECT id, type, idx, release_version, node_id, seq, size FROM dynos"
            " WHERE app_id = ? AND desired = 'run' AND oneoff = 0",
            (app_id,),
        )
    ]
    stopping = frozenset(
        (r[0], r[1])
        for r in db.execute(
            "SELECT type, idx FROM dynos WHERE app_id = ? AND desired = 'stop' AND oneoff = 0",
            (app_id,),
        )
    )
    return AppSnapshot(
        app_id, name, release, process_types, formation, sizes, rows, bool(preboot), stopping
    )


def node_usage(
    db: Database, sizes: Mapping[str, DynoSize]
) -> tuple[dict[str, int], dict[str, int]]:
    """Per node: memory committed to the dynos it should run (MB), and how many there are.

    Reads only the (desired, node_id, size) index, never the rows."""
    committed: dict[str, int] = {}
    counts: dict[str, int] = {}
    for node_id, size, count in db.execute(
        "SELECT node_id, size, COUNT(*) FROM dynos WHERE desired = 'run' AND node_id IS NOT NULL"
        " GROUP BY node_id, size"
    ):
        memory = sizes[size].memory_mb if size in sizes else 512
        committed[node_id] = committed.get(node_id, 0) + memory * count
        counts[node_id] = counts.get(node_id, 0) + count
    return committed, counts


def app_groups(db: Database, app_id: str) -> dict[tuple[str, str], int]:
    """(node, process type) -> the app's dynos of that type the node should run."""
    return {
        (node_id, ptype): count
        for node_id, ptype, count in db.execute(
            "SELECT node_id, type, COUNT(*) FROM dynos WHERE app_id = ? AND desired = 'run'"
            " AND node_id IS NOT NULL GROUP BY node_id, type",
            (app_id,),
        )
    }


def _need_mb(sizes: Mapping[str, DynoSize], size: str) -> int:
    return sizes[size].memory_mb if size in sizes else 512


async def _nothing(_app: str, _stopping: list[str]) -> None:
    return None


# The private-network flag of a new dyno row, copied from its app (the one parameter: the app's
# id) when the row is made: a dyno's spec never changes afterwards (see m010, m011).
APP_PRIVATE_NETWORK = "(SELECT private_network FROM apps WHERE id = ?)"


def next_dyno_seq(db: Database) -> int:
    row = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM dynos").fetchone()
    return int(row[0])


@dataclass(frozen=True)
class _Report:
    """What node_reported needs of one status: the dyno ids the node runs, and those ended."""

    ticket: int
    node_id: str
    running: frozenset[str]
    ended: frozenset[str]


def _forgettable(db: Database, report: _Report) -> bool:
    """Whether _forget_stopped would change anything for the report (read only)."""
    node_id, running = report.node_id, report.running
    for (dyno_id,) in db.execute(
        "SELECT id FROM dynos WHERE node_id = ? AND desired = 'stop'", (node_id,)
    ):
        if dyno_id not in running:
            return True
    for (dyno_id,) in db.execute("SELECT id FROM dyno_tombstones WHERE node_id = ?", (node_id,)):
        if dyno_id not in running:
            return True
    return any(
        db.execute(
            "SELECT 1 FROM dynos WHERE id = ? AND oneoff = 1 AND desired = 'run'", (dyno_id,)
        ).fetchone()
        for dyno_id in report.ended
    )


def _forget_stopped(db: Database, report: _Report) -> int:
    """Forgets the node's stopped dynos and tombstones it no longer runs, and lets it forget its
    ended one-offs (they run once): how many of those there were."""
    node_id, running = report.node_id, report.running
    gone = [
        r[0]
        for r in db.execute(
            "SELECT id FROM dynos WHERE node_id = ? AND desired = 'stop'", (node_id,)
        )
        if r[0] not in running
    ]
    for dyno_id in gone:
        db.execute("DELETE FROM dynos WHERE id = ?", (dyno_id,))
    for (dyno_id,) in db.execute(
        "SELECT id FROM dyno_tombstones WHERE node_id = ?", (node_id,)
    ).fetchall():
        if dyno_id not in running:
            db.execute("DELETE FROM dyno_tombstones WHERE id = ?", (dyno_id,))
    finished = 0
    for dyno_id in report.ended:
        finished += db.execute(
            "UPDATE dynos SET desired = 'stop' WHERE id = ? AND oneoff = 1 AND desired = 'run'",
            (dyno_id,),
        ).rowcount
    return finished


class Reconciler:
    def __init__(
        self,
        store: Store,
        fleet: Fleet,
        hub: LogHub,
        *,
        clock: Callable[[], float] = time.time,
        sizes: Mapping[str, DynoSize] = DEFAULT_SIZES,
        resync_interval: float = 5.0,
        stop_grace_seconds: int = STOP_GRACE_SECONDS,
        boot_timeout_seconds: int = BOOT_TIMEOUT_SECONDS,
    ) -> None:
        self._store = store
        self._fleet = fleet
        self._hub = hub
        self._clock = clock
        self._sizes = sizes
        self._resync_interval = resync_interval
        self._stop_grace = stop_grace_seconds
        self._boot_timeout = boot_timeout_seconds
        self._lock = trio.Lock()
        self._kicked_apps: set[str] = set()
        self._kicked_all = False
        self._wakeup = trio.Event()
        # Nodes whose assignment changed and has not been sent yet (only touched under the lock),
        # and since when the oldest of them waits (trio time).
        self._dirty: set[str] = set()
        self._dirty_since = 0.0
        self._assignments = Assignments(sizes, stop_grace_seconds, boot_timeout_seconds)
        # Node reports waiting to be handled, and how many were made and handled (node_reported).
        self._reports: list[_Report] = []
        self._reports_asked = 0
        self._reports_served = 0
        self._finished_tickets: frozenset[int] = frozenset()
        self._forgetting = trio.Lock()
        # Per node, its view for placement and the session facts it was made from (see fleet_view).
        self._node_views: dict[str, tuple[object, object, NodeView]] = {}
        # Why a dyno has no node yet, shown by `waka ps` (memory only: it is recomputed each pass).
        self.pending_reasons: dict[str, str] = {}
        # Per node, the dynos it runs that the database does not know (see _push_locked).
        self.unknown: dict[str, list[str]] = {}
        # Called before assignments go out, with the dynos this pass decided to stop.
        self.before_push: Callable[[str, list[str]], Awaitable[None]] = _nothing
        # Long-running services a node also runs (managed add-ons), as dyno specs, by node;
        # called inside a read transaction.
        self.services: Callable[[Database, str], list[DynoSpec]] = lambda _db, _node: []
        # The memory those services take, in MB by node (inside a read transaction).
        self.service_memory: Callable[[Database], Mapping[str, int]] = lambda _db: {}

    # ------------------------------------------------------------ triggers

    def kick(self, app: str | None = None) -> None:
        """Asks for a reconcile of one app (by name), or of everything; cheap and coalesced."""
        if app is None:
            self._kicked_all = True
        else:
            self._kicked_apps.add(app)
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        self._kicked_all = True
        while True:
            with trio.move_on_after(self._resync_interval):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            everything = self._kicked_all or not self._kicked_apps
            apps, self._kicked_apps, self._kicked_all = self._kicked_apps, set(), False
            if everything:
                await self.reconcile_all()
            else:
                await self._reconcile_batch(sorted(apps))

    # ------------------------------------------------------------ passes

    async def reconcile_all(self) -> None:
        names = await self._store.read(
            lambda db: [r[0] for r in db.execute("SELECT name FROM apps ORDER BY name")]
        )
        for name in names:
            async with self._lock:
                await self._reconcile_locked(name)
        await self.push_all()

    async def reconcile_app(self, app: str) -> None:
        async with self._lock:
            await self._reconcile_locked(app)
            await self._push_dirty_locked(last=True)

    async def _reconcile_batch(self, apps: Sequence[str]) -> None:
        """Reconciles apps one by one (others may take the lock in between); pushes at the end."""
        for i, app in enumerate(apps):
            async with self._lock:
                await self._reconcile_locked(app)
                await self._push_dirty_locked(last=i == len(apps) - 1)

    async def _reconcile_locked(self, app: str) -> None:
        view = self.fleet_view()
        touched, stopping = await self._store.write(lambda db: self._reconcile_in_tx(db, app, view))
        if touched and not self._dirty:
            self._dirty_since = trio.current_time()
        self._dirty |= touched
        # The router stops sending them requests, and their requests finish, before the
        # agents are told to stop them.
        await self.before_push(app, stopping)

    async def _push_dirty_locked(self, *, last: bool) -> None:
        """Sends the nodes marked dirty their assignments, unless another pass will do it soon.

        A burst of passes (a hundred apps scaled at once) touches the same nodes again and again;
        sending each node one assignment at the end of the burst instead of one per pass saves
        as many assignments, and as many status reports back. So a pass leaves the pushing to
        the next pass already waiting for the lock (every holder of the lock ends by pushing, or
        by leaving it to the next), and a burst that does not end still pushes every
        MAX_PUSH_DELAY seconds. `last`: no pass of the caller's own batch follows this one.
        """
        if not self._dirty:
            return
        overdue = trio.current_time() - self._dirty_since >= MAX_PUSH_DELAY
        if overdue or (last and not self._lock.statistics().tasks_waiting):
            await self._push_locked(sorted(self._dirty))

    def _reconcile_in_tx(
        self, db: Database, app_name: str, view: FleetView
    ) -> tuple[set[str], list[str]]:
        snapshot = _load_snapshot(db, app_name)
        if snapshot is None:
            return set(), []
        by_id = {r.id: r for r in snapshot.rows}
        plan = plan_app(
            snapshot.formation,
            snapshot.process_types,
            snapshot.release,
            snapshot.rows,
            lambda dyno_id: view.state(by_id[dyno_id]),
            preboot=snapshot.preboot,
            stopping=snapshot.stopping,
        )
        touched: set[str] = set()
        for dyno_id in plan.stop:
            row = by_id[dyno_id]
            db.execute("UPDATE dynos SET desired = 'stop' WHERE id = ?", (dyno_id,))
            self.pending_reasons.pop(dyno_id, None)
            if row.node_id:
                touched.add(row.node_id)
        stopped = set(plan.stop)
        waiting = [r for r in snapshot.rows if r.node_id is None and r.id not in stopped]
        if not waiting and not plan.create:
            # Nothing to place: no need to count what every node has committed.
            return touched, plan.stop

        placer = self._placer(db, view, snapshot.id, self._release_slug(db, snapshot))

        def choose(ptype: str, size: str) -> tuple[str | None, str]:
            placement = placer.place(ptype, _need_mb(self._sizes, size))
            return placement.node_id, placement.reason

        # Dynos that are waiting for a node get another chance first.
        for row in waiting:
            node_id, reason = choose(row.type, row.size)
            if node_id is not None:
                db.execute("UPDATE dynos SET node_id = ? WHERE id = ?", (node_id, row.id))
                self.pending_reasons.pop(row.id, None)
                touched.add(node_id)
            else:
                self.pending_reasons[row.id] = reason

        seq = next_dyno_seq(db)
        now = self._clock()
        for ptype, idx in plan.create:
            size = snapshot.sizes.get(ptype, "standard-1x")
            node_id, reason = choose(ptype, size)
            dyno_id = uuid.uuid4().hex
            db.execute(
                "INSERT INTO dynos (id, app_id, type, idx, release_version, node_id, desired,"
                " created_at, seq, size, private_network) VALUES (?, ?, ?, ?, ?, ?, 'run', ?, ?,"
                f" ?, {APP_PRIVATE_NETWORK})",
                (
                    dyno_id,
                    snapshot.id,
                    ptype,
                    idx,
                    snapshot.release,
                    node_id,
                    now,
                    seq,
                    size,
                    snapshot.id,
                ),
            )
            seq += 1
            if node_id is None:
                self.pending_reasons[dyno_id] = reason
            else:
                touched.add(node_id)
        return touched, plan.stop

    def node_usage(self, db: Database) -> tuple[dict[str, int], dict[str, int]]:
        """Per node: MB committed (its dynos' sizes and its services', the managed add-ons) and
        how many dynos it should run."""
        committed, counts = node_usage(db, self._sizes)
        for node_id, memory_mb in self.service_memory(db).items():
            committed[node_id] = committed.get(node_id, 0) + memory_mb
        return committed, counts

    def committed_memory(self, db: Database) -> dict[str, int]:
        return self.node_usage(db)[0]

    def _placer(self, db: Database, view: FleetView, app_id: str, slug_sha: str) -> Placer:
        """Placement for one pass: every node's load now, and the app's dynos per node and type."""
        committed = self.committed_memory(db)
        nodes = [
            NodeInfo(
                node_id=n.node_id,
                name=n.name,
                capacity_mb=n.capacity_mb,
                committed_mb=committed.get(n.node_id, 0),
                has_slug=bool(slug_sha) and slug_sha in n.slugs,
                schedulable=n.schedulable,
            )
            for n in view.nodes
        ]
        return Placer(nodes, app_groups(db, app_id))

    def fleet_view(self) -> FleetView:
        sessions = self._fleet.sessions()
        nodes = []
        for s in sessions:
            schedulable = self._fleet.schedulable(s.node_id)
            # A node's view changes only with its session, inventory, slugs or schedulability;
            # made fresh each pass, the 200 views cost more than the rest of a quiet pass.
            cached = self._node_views.get(s.node_id)
            if (
                cached is not None
                and cached[0] is s
                and cached[1] is s.inventory
                and cached[2].schedulable == schedulable
                and cached[2].slugs == s.slugs
            ):
                nodes.append(cached[2])
                continue
            node = NodeView(
                node_id=s.node_id,
                name=s.name,
                capacity_mb=max(int(s.inventory.memory_total_mb), 1),
                slugs=frozenset(s.slugs),
                schedulable=schedulable,
            )
            self._node_views[s.node_id] = (s, s.inventory, node)
            nodes.append(node)
        if len(self._node_views) > len(sessions):
            current = {s.node_id for s in sessions}
            for node_id in set(self._node_views) - current:
                del self._node_views[node_id]
        return FleetView(nodes=tuple(nodes), reports={s.node_id: s.dynos for s in sessions})

    @staticmethod
    def _release_slug(db: Database, snapshot: AppSnapshot) -> str:
        row = db.execute(
            "SELECT slug_sha256 FROM releases WHERE app_id = ? AND version = ?",
            (snapshot.id, snapshot.release),
        ).fetchone()
        return row[0] if row and row[0] else ""

    def place_one(
        self, db: Database, view: FleetView, app_id: str, ptype: str, size: str
    ) -> tuple[str | None, str]:
        """A node for one new dyno (one-offs); call inside a write transaction with a view taken
        on the trio thread."""
        placement = self._placer(db, view, app_id, "").place(ptype, _need_mb(self._sizes, size))
        return placement.node_id, placement.reason

    # ------------------------------------------------------------ node status

    async def node_reported(self, node_id: str, changed_apps: set[str]) -> None:
        """After a node's status: forget stopped dynos it no longer runs, reconcile what changed.

        Statuses from 200 nodes arrive a few hundred a second, and each was a write transaction
        (and a hop to the store's thread) even when, as nearly always, there was nothing to
        forget. Reports that arrive while one is being handled wait for it and are then handled
        together, in order, in one hop, and the write transaction is opened only when a read
        shows something to forget: as if each had been handled alone, one after another.
        """
        session = self._fleet.session(node_id)
        if session is None:
            return
        self._reports_asked += 1
        ticket = self._reports_asked
        self._reports.append(
            _Report(
                ticket,
                node_id,
                frozenset(session.dynos),
                frozenset(d.id for d in session.dynos.values() if d.state in _ENDED),
            )
        )
        async with self._forgetting:
            # FIFO: until a later ticket takes the lock, the last handled batch holds ours.
            if self._reports_served < ticket:
                await self._forget_reported()
            finished = ticket in self._finished_tickets
        if finished:
            await self.push_node(node_id)
        for app in changed_apps:
            self.kick(app)

    async def _forget_reported(self) -> None:
        asked = self._reports_asked
        reports, self._reports = self._reports, []
        try:
            finished = await self._store.read(partial(self._forget_in_db, reports))
        except BaseException:
            # Not handled: the next caller in line handles them (with anything newer).
            self._reports[:0] = reports
            raise
        self._reports_served = asked
        self._finished_tickets = finished

    def _forget_in_db(self, reports: Sequence[_Report], db: Database) -> frozenset[int]:
        """The tickets of `reports` that had a one-off finish. In the store's thread, holding its
        one connection: nothing can write between the check and the transaction."""
        if not any(_forgettable(db, report) for report in reports):
            return frozenset()

        def forget(db: Database) -> frozenset[int]:
            return frozenset(r.ticket for r in reports if _forget_stopped(db, r))

        return self._store.write_now(forget)

    async def node_down(self, node_id: str) -> None:
        """A node is lost: its dynos are replaced elsewhere, and stopped there if it returns."""

        def abandon(db: Database) -> list[str]:
            apps = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT a.name FROM dynos d JOIN apps a ON a.id = d.app_id"
                    " WHERE d.node_id = ? AND d.desired = 'run'",
                    (node_id,),
                )
            ]
            db.execute(
                "UPDATE dynos SET desired = 'stop' WHERE node_id = ? AND desired = 'run'",
                (node_id,),
            )
            return apps

        await self._reconcile_batch(await self._store.write(abandon))

    # ------------------------------------------------------------ assignments

    async def push_all(self) -> None:
        """The periodic resync: every node that is not known to run its current assignment gets
        it again (level-triggered: an agent that lost a dyno starts it again)."""
        async with self._lock:
            sessions = self._fleet.sessions()
            for node_id in self._assignments.nodes() - {s.node_id for s in sessions}:
                self._assignments.forget(node_id)
            node_ids = [s.node_id for s in sessions]
            await self._push_locked(node_ids, unless_unchanged=set(node_ids) - self._dirty)
            # Dirty nodes without a session (gone since) are done with too.
            self._dirty.clear()

    async def push_node(self, node_id: str) -> None:
        async with self._lock:
            await self._push_locked(sorted(self._dirty | {node_id}))

    async def _push_locked(
        self, node_ids: Sequence[str], *, unless_unchanged: Collection[str] = ()
    ) -> None:
        """Sends each node its complete assignment. Nodes in `unless_unchanged` are skipped when
        their session was already sent exactly this and reports running exactly that."""
        self._dirty.difference_update(node_ids)
        sessions = {}
        for node_id in node_ids:
            session = self._fleet.session(node_id)
            if session is None:
                self._assignments.forget(node_id)
            else:
                sessions[node_id] = session
        if not sessions:
            return
        assignments: dict[str, NodeAssignment] = await self._store.read(
            lambda db: self._assignments.read(db, list(sessions), self.services)
        )
        # Each release's config and process types are decoded once per push, not once per dyno.
        decoded: dict[tuple[str, int], tuple[dict, dict]] = {}
        for node_id, session in sessions.items():
            assignment = assignments[node_id]
            # A dyno the node runs that this database never heard of (it was restored, or is
            # new) is left alone, not stopped, until an operator says otherwise.
            unknown = sorted(set(session.dynos) - assignment.known)
            self.unknown[node_id] = unknown
            keep = [] if node_id in self._fleet.adopting else unknown
            message = self._assignments.message(
                node_id,
                session,
                assignment,
                keep,
                unless_unchanged=node_id in unless_unchanged,
                decoded=decoded,
            )
            if message is not None and not session.send(message):
                self._assignments.forget(node_id)
