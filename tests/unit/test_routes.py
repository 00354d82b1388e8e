"""The router's table kept from the store and the agents' reports, against a real SQLite store and
fake agent sessions: refreshes asked for together are read in one hop, and each caller still sees
the state as it was after it asked."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from store_fixtures import insert_app

from waka.controller._fleet import Fleet
from waka.controller._router_table import AppRoute, Backend, RoutingTable
from waka.controller._routes import Routes
from waka.controller._store import Store
from waka.v1.agent_pb2 import DynoStatus, Inventory, NodeStatus
from waka.v1.common_pb2 import DynoState


class CountingStore(Store):
    """Counts reads; while `gate` is set and not yet open, a read waits for it."""

    reads = 0
    gate: trio.Event | None = None

    async def read(self, fn):
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return await super().read(fn)


@pytest.fixture
def store(tmp_path):
    store = CountingStore.open(tmp_path / "waka.db")
    yield store
    store.close()


def add_web_app(store: Store, name: str, dynos: int) -> None:
    def insert(db):
        app_id = insert_app(db, name, {"web": "serve"}, {})
        for idx in range(1, dynos + 1):
            db.execute(
                "INSERT INTO dynos (id, app_id, type, idx, release_version, node_id, desired,"
                " created_at, seq, size) VALUES (?, ?, 'web', ?, 1, 'node-0', 'run', 0, ?,"
                " 'standard-1x')",
                (f"{name}.{idx}", app_id, idx, idx),
            )

    store.write_now(insert)


def test_refreshes_asked_together_are_read_in_one_hop(store):
    store.write_now(
        lambda db: db.execute("INSERT INTO nodes (id, name, created_at) VALUES ('node-0', 'n', 0)")
    )
    for name in ("one", "two", "three"):
        add_web_app(store, name, 2)
    fleet = Fleet()
    session = fleet.attach("node-0", "n", Inventory(address="10.0.0.5"))
    up = DynoState.DYNO_STATE_UP
    fleet.update_status(
        session,
        NodeStatus(
            dynos=[DynoStatus(id=f"{a}.1", app=a, state=up, port=5000) for a in ("one", "two")]
        ),
    )
    table = RoutingTable()
    table.update_app(AppRoute.build("gone", []))
    routes = Routes(table, store, fleet)

    async def main():
        store.gate = trio.Event()
        async with trio.open_nursery() as nursery:
            # The first reads alone; the others, asked while it reads, are read together.
            for app in ("one", "two", "three", "gone", "one"):
                nursery.start_soon(routes.refresh, app)
                await trio.testing.wait_all_tasks_blocked()
            store.gate.set()
        assert store.reads == 2
        # Asked after a status changed: the refresh sees the change.
        fleet.update_status(
            session, NodeStatus(dynos=[DynoStatus(id="three.2", app="three", state=up, port=7)])
        )
        await routes.refresh("three")

    trio.run(main)
    assert table.route("one").backends == (Backend("web.1", "10.0.0.5:5000", 1),)
    assert table.route("two").backends == (Backend("web.1", "10.0.0.5:5000", 1),)
    assert table.route("three").backends == (Backend("web.2", "10.0.0.5:7", 1),)
    assert table.route("gone") is None
