"""The reconciler against a real SQLite store and fake agent sessions (no gRPC).

What these pin down: placement through the reconciler is `place()`'s, a burst of passes sends each
node one assignment, and the periodic resync sends nothing to a node that already runs exactly its
current assignment, but sends it again the moment that is not so.
"""

from __future__ import annotations

import sqlite3

import pytest
import trio
import trio.testing
from store_fixtures import insert_app

from waka.controller._fleet import AgentSession, Fleet
from waka.controller._logs import LogHub
from waka.controller._placement import DynoRow
from waka.controller._reconcile import Reconciler, node_usage
from waka.controller._sizes import DEFAULT_SIZES
from waka.controller._store import Store
from waka.v1.agent_pb2 import Assignment, DynoStatus, Inventory, NodeStatus
from waka.v1.common_pb2 import DynoState

UP = DynoState.DYNO_STATE_UP
CRASHED = DynoState.DYNO_STATE_CRASHED


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path / "waka.db")
    yield store
    store.close()


def add_app(store: Store, name: str, quantity: int, *, config: dict | None = None) -> str:
    def insert(db):
        app_id = insert_app(db, name, {"worker": "sleep 1"}, config or {"A": "1"})
        db.execute(
            "INSERT INTO formation (app_id, type, quantity, size)"
            " VALUES (?, 'worker', ?, 'standard-1x')",
            (app_id, quantity),
        )
        return app_id

    return store.write_now(insert)


def scale(store: Store, app_id: str, quantity: int) -> None:
    store.write_now(
        lambda db: db.execute(
            "UPDATE formation SET quantity = ? WHERE app_id = ?", (quantity, app_id)
        )
    )


def join(store: Store, fleet: Fleet, count: int, memory_mb: int = 65536) -> list[AgentSession]:
    store.write_now(
        lambda db: db.conn.executemany(
            "INSERT INTO nodes (id, name, created_at) VALUES (?, ?, 0)",
            [(f"node-{i}", f"n{i}") for i in range(count)],
        )
    )
    return [
        fleet.attach(f"node-{i}", f"n{i}", Inventory(memory_total_mb=memory_mb))
        for i in range(count)
    ]


def drain_outbox(session: AgentSession) -> list[Assignment]:
    """The assignments queued for a session so far (its outbox is left empty)."""
    sent = []
    while True:
        try:
            message = session._receive.receive_nowait()
        except trio.WouldBlock:
            return sent
        sent.append(message.assignment)


def report_running(fleet: Fleet, session: AgentSession, assignment: Assignment) -> None:
    """The agent's side: it runs what it was assigned, every dyno up."""
    status = NodeStatus(
        dynos=[DynoStatus(id=d.id, app=d.app, state=UP, port=20000) for d in assignment.dynos]
    )
    fleet.update_status(session, status)


def placed(store: Store) -> dict[str, int]:
    return store.read_now(lambda db: node_usage(db, DEFAULT_SIZES)[1])


def run(fn):
    # Time stands still (no autojump): no burst is ever "overdue", so pushes are deterministic.
    trio.run(fn, clock=trio.testing.MockClock())


def test_a_pass_places_and_sends_each_touched_node_its_whole_assignment(store):
    fleet = Fleet()
    sessions = join(store, fleet, 4)
    app = add_app(store, "one", 6, config={"GREETING": "hi"})
    reconciler = Reconciler(store, fleet, LogHub())

    async def main():
        await reconciler.reconcile_app("one")

    run(main)
    # Spread first: two nodes get two of the app's dynos, two get one.
    assert sorted(placed(store).values()) == [1, 1, 2, 2]
    for session in sessions:
        (assignment,) = drain_outbox(session)
        assert len(assignment.dynos) == placed(store)[session.node_id]
        for spec in assignment.dynos:
            assert spec.app == "one" and spec.command == "sleep 1"
            assert spec.env["GREETING"] == "hi" and spec.env["WAKA_DYNO_ID"] == spec.id
            assert spec.size.memory_mb == 512
    assert app


def test_a_burst_of_passes_sends_each_node_one_assignment(store):
    fleet = Fleet()
    sessions = join(store, fleet, 3)
    for i in range(5):
        add_app(store, f"app{i}", 3)
    reconciler = Reconciler(store, fleet, LogHub())

    async def main():
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(reconciler.reconcile_app, f"app{i}")

    run(main)
    for session in sessions:
        (assignment,) = drain_outbox(session)
        # Every app's dynos spread over the three nodes: one each.
        assert sorted(d.app for d in assignment.dynos) == [f"app{i}" for i in range(5)]


def test_resync_sends_nothing_to_a_node_running_exactly_its_assignment(store):
    fleet = Fleet()
    (session,) = join(store, fleet, 1)
    add_app(store, "one", 2)
    reconciler = Reconciler(store, fleet, LogHub())

    async def main():
        await reconciler.reconcile_app("one")
        (first,) = drain_outbox(session)
        # Sent but not yet running: the resync sends it again.
        await reconciler.reconcile_all()
        assert drain_outbox(session) == [first]
        report_running(fleet, session, first)
        await reconciler.reconcile_all()
        await reconciler.reconcile_all()
        assert drain_outbox(session) == []
        # The agent lost a dyno: the next resync sends the assignment again.
        report_running(fleet, session, Assignment(dynos=first.dynos[:1]))
        await reconciler.reconcile_all()
        assert drain_outbox(session) == [first]
        # It runs something the database does not know: it is told to keep it.
        extra = NodeStatus(
            dynos=[
                *(DynoStatus(id=d.id, app=d.app, state=UP) for d in first.dynos),
                DynoStatus(id="stranger", app="other", state=UP),
            ]
        )
        fleet.update_status(session, extra)
        await reconciler.reconcile_all()
        (kept,) = drain_outbox(session)
        assert list(kept.keep) == ["stranger"] and kept.dynos == first.dynos
        await reconciler.reconcile_all()
        assert drain_outbox(session) == []

    run(main)


def test_resync_sends_a_changed_assignment_and_a_new_session_its_first(store):
    fleet = Fleet()
    (session,) = join(store, fleet, 1)
    app = add_app(store, "one", 1)
    reconciler = Reconciler(store, fleet, LogHub())

    async def main():
        await reconciler.reconcile_app("one")
        (first,) = drain_outbox(session)
        report_running(fleet, session, first)
        await reconciler.reconcile_all()
        assert drain_outbox(session) == []
        # A new session of the same node (the agent reconnected) gets the full state.
        again = fleet.attach(session.node_id, session.name, session.inventory)
        report_running(fleet, again, first)
        await reconciler.reconcile_all()
        assert drain_outbox(again) == [first]
        # A pass that changes the assignment sends it, resync or not.
        scale(store, app, 2)
        await reconciler.reconcile_all()
        (second,) = drain_outbox(again)
        assert len(second.dynos) == 2 and second.dynos[0] == first.dynos[0]

    run(main)


def test_scaling_down_stops_the_extra_dynos_and_sends_the_shorter_list(store):
    fleet = Fleet()
    sessions = join(store, fleet, 2)
    app = add_app(store, "one", 4)
    reconciler = Reconciler(store, fleet, LogHub())
    stopping = []

    async def before_push(name, dyno_ids):
        stopping.extend(dyno_ids)

    reconciler.before_push = before_push

    async def main():
        await reconciler.reconcile_app("one")
        for session in sessions:
            (assignment,) = drain_outbox(session)
            report_running(fleet, session, assignment)
        scale(store, app, 1)
        await reconciler.reconcile_app("one")

    run(main)
    assert len(stopping) == 3
    remaining = [d for s in sessions for a in drain_outbox(s) for d in a.dynos]
    assert [d.name for d in remaining] == ["worker.1"]


def test_dynos_wait_with_a_reason_when_no_node_can_take_them(store):
    fleet = Fleet()
    (session,) = join(store, fleet, 1, memory_mb=256)
    add_app(store, "one", 3)
    reconciler = Reconciler(store, fleet, LogHub())

    async def main():
        await reconciler.reconcile_app("one")

    run(main)
    # 256 MB with 4x overcommit holds two 512 MB dynos.
    assert placed(store) == {session.node_id: 2}
    assert len(reconciler.pending_reasons) == 1
    assert "512 MB" in next(iter(reconciler.pending_reasons.values()))


def test_memory_taken_by_a_nodes_services_is_not_placed_again(store):
    fleet = Fleet()
    (session,) = join(store, fleet, 1, memory_mb=256)
    add_app(store, "one", 3)
    reconciler = Reconciler(store, fleet, LogHub())
    # A managed add-on of 512 MB on the node: of 1024 MB (4x overcommit) 512 are left.
    reconciler.service_memory = lambda _db: {session.node_id: 512}

    async def main():
        await reconciler.reconcile_app("one")

    run(main)
    assert placed(store) == {session.node_id: 1}
    assert len(reconciler.pending_reasons) == 2
    assert store.read_now(reconciler.committed_memory) == {session.node_id: 1024}


def test_a_fleet_view_is_a_snapshot_of_what_the_nodes_reported(store):
    fleet = Fleet()
    one, two = join(store, fleet, 2)
    fleet.update_status(one, NodeStatus(dynos=[DynoStatus(id="a", state=UP)]))
    fleet.update_status(two, NodeStatus(dynos=[DynoStatus(id="b", state=CRASHED)]))
    view = Reconciler(store, fleet, LogHub()).fleet_view()

    def state(dyno_id, node_id):
        return view.state(DynoRow(dyno_id, "web", 1, 1, node_id, 1, "standard-1x"))

    assert state("a", one.node_id) == UP and state("b", two.node_id) == CRASHED
    assert state("b", one.node_id) is None and state("c", None) is None
    # Later reports change the fleet, not the view.
    fleet.update_status(one, NodeStatus(dynos=[DynoStatus(id="a", state=CRASHED)]))
    fleet.detach(two)
    assert state("a", one.node_id) == UP and state("b", two.node_id) == CRASHED


def test_what_a_kept_spec_is_made_of_cannot_change_but_placement_and_status_can(store):
    fleet = Fleet()
    join(store, fleet, 1)
    app = add_app(store, "one", 1)

    async def main():
        await Reconciler(store, fleet, LogHub()).reconcile_app("one")

    run(main)
    for sql in (
        "UPDATE dynos SET size = 'standard-2x'",
        'UPDATE dynos SET env = \'{"A": "2"}\'',
        "UPDATE releases SET config = '{}'",
        "UPDATE apps SET uid = uid + 1",
        "UPDATE apps SET stack = 'other'",
    ):
        with pytest.raises(sqlite3.IntegrityError, match=r"never changes|keeps its id, uid"):
            store.write_now(lambda db, sql=sql: db.execute(sql))
    store.write_now(lambda db: db.execute("UPDATE dynos SET desired = 'stop', node_id = NULL"))
    store.write_now(lambda db: db.execute("UPDATE dynos SET size = size"))
    store.write_now(lambda db: db.execute("UPDATE releases SET status = 'failed'"))
    store.write_now(lambda db: db.execute("UPDATE apps SET preboot = 0 WHERE id = ?", (app,)))
    # A name is not identity (`waka apps:rename`): the dynos it names are replaced instead.
    store.write_now(lambda db: db.execute("UPDATE apps SET name = 'renamed' WHERE id = ?", (app,)))


class CountingStore(Store):
    """Counts hops to the store's thread and write transactions."""

    hops = 0
    transactions = 0

    async def read(self, fn):
        self.hops += 1
        return await super().read(fn)

    async def write(self, fn):
        self.hops += 1
        return await super().write(fn)

    def write_now(self, fn):
        self.transactions += 1
        return super().write_now(fn)


def rows(store: Store, sql: str) -> list:
    return store.read_now(lambda db: db.execute(sql).fetchall())


def test_reports_arriving_together_are_handled_in_one_hop_as_if_one_after_another(tmp_path):
    store = CountingStore.open(tmp_path / "waka.db")
    fleet = Fleet()
    sessions = join(store, fleet, 4)
    app = add_app(store, "one", 4)
    reconciler = Reconciler(store, fleet, LogHub())

    async def report_all() -> None:
        async with trio.open_nursery() as nursery:
            for session in sessions:
                nursery.start_soon(reconciler.node_reported, session.node_id, set())

    async def main():
        await reconciler.reconcile_app("one")
        for session in sessions:
            report_running(fleet, session, drain_outbox(session)[0])
        hops, transactions = store.hops, store.transactions
        # Nothing to forget: one hop for the four reports, and no write transaction.
        await report_all()
        assert (store.hops - hops, store.transactions - transactions) == (1, 0)
        # Two dynos are stopped; one node stopped its dyno, the other still runs it.
        scale(store, app, 2)
        await reconciler.reconcile_app("one")
        stopped = dict(rows(store, "SELECT node_id, id FROM dynos WHERE desired = 'stop'"))
        (gone, still) = sorted(stopped)
        fleet.update_status(fleet.session(gone), NodeStatus())
        # A one-off on a third node has ended: it is let go, and that node sent its assignment.
        runner = next(s for s in sessions if s.node_id not in stopped)
        store.write_now(
            lambda db: db.execute(
                "INSERT INTO dynos (id, app_id, type, idx, release_version, node_id, desired,"
                " created_at, seq, size, oneoff) VALUES ('run1', ?, 'run', 1, 1, ?, 'run', 0,"
                " 99, 'standard-1x', 1)",
                (app, runner.node_id),
            )
        )
        fleet.update_status(
            runner,
            NodeStatus(
                dynos=[*runner.dynos.values(), DynoStatus(id="run1", app="one", state=CRASHED)]
            ),
        )
        drain_outbox(runner)
        hops = store.hops
        await report_all()
        # One hop for the reports, one to read the assignment of the node that ran the one-off.
        assert store.hops - hops == 2
        assert rows(store, "SELECT id FROM dynos WHERE desired = 'stop' AND oneoff = 0") == [
            (stopped[still],)
        ]
        assert rows(store, "SELECT desired FROM dynos WHERE id = 'run1'") == [("stop",)]
        (assignment,) = drain_outbox(runner)
        assert "run1" not in {d.id for d in assignment.dynos}

    try:
        run(main)
    finally:
        store.close()
