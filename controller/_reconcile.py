"""Makes what runs meet what should run: the reconcile loop and the assignments it sends.

Desired state (formation × current release, as dyno rows) lives in SQLite; actual state is what the
agents last reported. A reconcile is triggered by events (a release, a scale, a restart, an agent's
status changing) and by a periodic full resync, and it is idempotent: running it twice changes
nothing the second time. Each agent is always sent the complete list of dynos it should run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import trio
from sqlite_utils import Database

from waka.controller._fleet import Fleet
from waka.controller._logs import LogHub
from waka.controller._placement import DynoRow, NodeLoad, place, plan_app
from waka.controller._sizes import DEFAULT_SIZES
from waka.controller._store import Store
from waka.v1.agent_pb2 import Assignment, ControllerMessage, DynoSpec, SlugRef
from waka.v1.common_pb2 import DynoSize, DynoState, WindowSize

_ENDED = frozenset({DynoState.DYNO_STATE_DOWN, DynoState.DYNO_STATE_CRASHED})
STOP_GRACE_SECONDS = 30
BOOT_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class NodeView:
    node_id: str
    name: str
    capacity_mb: int
    slugs: frozenset[str]
    schedulable: bool = True


@dataclass(frozen=True)
class FleetView:
    """What the agents reported, copied on the trio thread for a worker thread to read."""

    nodes: tuple[NodeView, ...]
    states: Mapping[str, int]


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


def committed_by_node(
    db: Database, sizes: Mapping[str, DynoSize]
) -> tuple[dict[str, int], dict[tuple[str, str, str], int]]:
    committed: dict[str, int] = {}
    groups: dict[tuple[str, str, str], int] = {}
    for node_id, app_id, ptype, size, count in db.execute(
        "SELECT node_id, app_id, type, size, COUNT(*) FROM dynos"
        " WHERE desired = 'run' AND node_id IS NOT NULL GROUP BY node_id, app_id, type, size"
    ):
        memory = sizes[size].memory_mb if size in sizes else 512
        committed[node_id] = committed.get(node_id, 0) + memory * count
        groups[(node_id, app_id, ptype)] = groups.get((node_id, app_id, ptype), 0) + count
    return committed, groups


async def _nothing(_app: str, _stopping: list[str]) -> None:
    return None


def _known_dynos(db: Database, node_id: str) -> set[str]:
    rows = db.execute(
        "SELECT id FROM dynos WHERE node_id = ? UNION SELECT id FROM dyno_tombstones"
        " WHERE node_id = ?",
        (node_id, node_id),
    )
    return {r[0] for r in rows}


def next_dyno_seq(db: Database) -> int:
    row = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM dynos").fetchone()
    return int(row[0])


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
        # Why a dyno has no node yet, shown by `waka ps` (memory only: it is recomputed each pass).
        self.pending_reasons: dict[str, str] = {}
        # Per node, the dynos it runs that the database does not know (see _push_locked).
        self.unknown: dict[str, list[str]] = {}
        # Called before assignments go out, with the dynos this pass decided to stop.
        self.before_push: Callable[[str, list[str]], Awaitable[None]] = _nothing
        # Long-running services a node also runs (managed add-ons), as dyno specs, by node;
        # called inside a read transaction.
        self.services: Callable[[Database, str], list[DynoSpec]] = lambda _db, _node: []

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
                for app in sorted(apps):
                    await self.reconcile_app(app)

    # ------------------------------------------------------------ passes

    async def reconcile_all(self) -> None:
        names = await self._store.read(
            lambda db: [r[0] for r in db.execute("SELECT name FROM apps ORDER BY name")]
        )
        for name in names:
            await self.reconcile_app(name)
        await self.push_all()

    async def reconcile_app(self, app: str) -> None:
        async with self._lock:
            view = self.fleet_view()
            touched, stopping = await self._store.write(
                lambda db: self._reconcile_in_tx(db, app, view)
            )
            # The router stops sending them requests, and their requests finish, before the
            # agents are told to stop them.
            await self.before_push(app, stopping)
            for node_id in sorted(touched):
                await self._push_locked(node_id)

    def _reconcile_in_tx(
        self, db: Database, app_name: str, view: FleetView
    ) -> tuple[set[str], list[str]]:
        snapshot = _load_snapshot(db, app_name)
        if snapshot is None:
            return set(), []
        plan = plan_app(
            snapshot.formation,
            snapshot.process_types,
            snapshot.release,
            snapshot.rows,
            view.states.get,
            preboot=snapshot.preboot,
            stopping=snapshot.stopping,
        )
        touched: set[str] = set()
        for dyno_id in plan.stop:
            row = next(r for r in snapshot.rows if r.id == dyno_id)
            db.execute("UPDATE dynos SET desired = 'stop' WHERE id = ?", (dyno_id,))
            self.pending_reasons.pop(dyno_id, None)
            if row.node_id:
                touched.add(row.node_id)

        committed, groups = committed_by_node(db, self._sizes)
        slug_sha = self._release_slug(db, snapshot)

        def choose(ptype: str, size: str) -> tuple[str | None, str]:
            loads = [
                NodeLoad(
                    node_id=n.node_id,
                    name=n.name,
                    capacity_mb=n.capacity_mb,
                    committed_mb=committed.get(n.node_id, 0),
                    same_group=groups.get((n.node_id, snapshot.id, ptype), 0),
                    has_slug=slug_sha in n.slugs,
                    schedulable=n.schedulable,
                )
                for n in view.nodes
            ]
            need = self._sizes[size].memory_mb if size in self._sizes else 512
            placement = place(loads, need)
            if placement.node_id is not None:
                committed[placement.node_id] = committed.get(placement.node_id, 0) + need
                key = (placement.node_id, snapshot.id, ptype)
                groups[key] = groups.get(key, 0) + 1
            return placement.node_id, placement.reason

        # Dynos that are waiting for a node get another chance first.
        for row in snapshot.rows:
            if row.node_id is None and row.id not in plan.stop:
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
                " created_at, seq, size) VALUES (?, ?, ?, ?, ?, ?, 'run', ?, ?, ?)",
                (dyno_id, snapshot.id, ptype, idx, snapshot.release, node_id, now, seq, size),
            )
            seq += 1
            if node_id is None:
                self.pending_reasons[dyno_id] = reason
            else:
                touched.add(node_id)
        return touched, plan.stop

    def fleet_view(self) -> FleetView:
        sessions = self._fleet.sessions()
        return FleetView(
            nodes=tuple(
                NodeView(
                    node_id=s.node_id,
                    name=s.name,
                    capacity_mb=max(int(s.inventory.memory_total_mb), 1),
                    slugs=frozenset(s.slugs),
                    schedulable=self._fleet.schedulable(s.node_id),
                )
                for s in sessions
            ),
            states={d.id: d.state for s in sessions for d in s.dynos.values()},
        )

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
        committed, groups = committed_by_node(db, self._sizes)
        loads = [
            NodeLoad(
                node_id=n.node_id,
                name=n.name,
                capacity_mb=n.capacity_mb,
                committed_mb=committed.get(n.node_id, 0),
                same_group=groups.get((n.node_id, app_id, ptype), 0),
                has_slug=False,
                schedulable=n.schedulable,
            )
            for n in view.nodes
        ]
        need = self._sizes[size].memory_mb if size in self._sizes else 512
        placement = place(loads, need)
        return placement.node_id, placement.reason

    # ------------------------------------------------------------ node status

    async def node_reported(self, node_id: str, changed_apps: set[str]) -> None:
        """After a node's status: forget stopped dynos it no longer runs, reconcile what changed."""
        session = self._fleet.session(node_id)
        if session is None:
            return
        running = set(session.dynos)
        ended = {d.id for d in session.dynos.values() if d.state in _ENDED}

        def forget_stopped(db: Database) -> int:
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
            # One-off dynos run once: when one has ended, its node may forget it.
            finished = 0
            for dyno_id in ended:
                finished += db.execute(
                    "UPDATE dynos SET desired = 'stop' WHERE id = ? AND oneoff = 1"
                    " AND desired = 'run'",
                    (dyno_id,),
                ).rowcount
            return finished

        if await self._store.write(forget_stopped):
            await self.push_node(node_id)
        for app in changed_apps:
            self.kick(app)

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

        for app in await self._store.write(abandon):
            await self.reconcile_app(app)

    # ------------------------------------------------------------ assignments

    async def push_all(self) -> None:
        async with self._lock:
            for session in self._fleet.sessions():
                await self._push_locked(session.node_id)

    async def push_node(self, node_id: str) -> None:
        async with self._lock:
            await self._push_locked(node_id)

    async def _push_locked(self, node_id: str) -> None:
        session = self._fleet.session(node_id)
        if session is None:
            return

        def read(db: Database) -> tuple[list[DynoSpec], set[str]]:
            services = self.services(db, node_id)
            known = _known_dynos(db, node_id) | {spec.id for spec in services}
            return self._assignment_for(db, node_id) + services, known

        specs, known = await self._store.read(read)
        # A dyno the node runs that this database never heard of (it was restored, or is new)
        # is left alone, not stopped, until an operator says otherwise.
        unknown = sorted(set(session.dynos) - known)
        self.unknown[node_id] = unknown
        keep = [] if node_id in self._fleet.adopting else unknown
        session.send(ControllerMessage(assignment=Assignment(dynos=specs, keep=keep)))

    def _assignment_for(self, db: Database, node_id: str) -> list[DynoSpec]:
        specs = []
        for row in db.query(
            "SELECT d.id, d.type, d.idx, d.release_version, d.size, d.oneoff, d.command,"
            " d.env AS extra_env, d.attach, d.tty, d.timeout_seconds, d.tty_cols, d.tty_rows,"
            " a.name AS app, a.uid, a.stack, r.slug_sha256, r.slug_size, r.process_types,"
            " r.health_check_path,"
            " r.config FROM dynos d JOIN apps a ON a.id = d.app_id"
            " JOIN releases r ON r.app_id = d.app_id AND r.version = d.release_version"
            " WHERE d.node_id = ? AND d.desired = 'run' ORDER BY d.seq",
            (node_id,),
        ):
            process_types = json.loads(row["process_types"])
            command = row["command"] or process_types.get(row["type"], "")
            name = f"{row['type']}.{row['idx']}"
            env = dict(json.loads(row["config"]))
            env.update(json.loads(row["extra_env"]))
            env.update(
                {
                    "WAKA_APP_NAME": row["app"],
                    "WAKA_RELEASE_VERSION": f"v{row['release_version']}",
                    "WAKA_DYNO_ID": row["id"],
                }
            )
            size = self._sizes.get(row["size"]) or self._sizes["standard-1x"]
            specs.append(
                DynoSpec(
                    id=row["id"],
                    app=row["app"],
                    name=name,
                    type=row["type"],
                    release=row["release_version"],
                    slug=SlugRef(sha256=row["slug_sha256"] or "", size=row["slug_size"] or 0),
                    command=command,
                    env=env,
                    size=size,
                    uid=row["uid"],
                    oneoff=bool(row["oneoff"]),
                    stack=row["stack"],
                    stop_grace_seconds=self._stop_grace,
                    boot_timeout_seconds=self._boot_timeout,
                    attach=bool(row["attach"]),
                    tty=bool(row["tty"]),
                    window=WindowSize(cols=row["tty_cols"], rows=row["tty_rows"]),
                    timeout_seconds=row["timeout_seconds"],
                    health_check_path=row["health_check_path"] if row["type"] == "web" else "",
                )
            )
        return specs
