"""The private-network feature's pure parts and its controller state, against a real SQLite store
and fake agent sessions: a dyno takes its app's setting when it is made and keeps it, restarting
makes new dynos that follow the app, and the router dials the address a dyno reports."""

from __future__ import annotations

import json
import sqlite3

import pytest
import trio
import trio.testing

from waka.cli._domains import FEATURES, feature_states, feature_update
from waka.cli._errors import CliError
from waka.controller._fleet import AgentSession, Fleet
from waka.controller._formation import Formation
from waka.controller._logs import LogHub
from waka.controller._reconcile import Reconciler
from waka.controller._routes import dial_address
from waka.controller._store import Store
from waka.v1.agent_pb2 import Assignment, DynoSpec, DynoStatus, Inventory
from waka.v1.platform_pb2 import App


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path / "waka.db")
    yield store
    store.close()


def add_web_app(store: Store, name: str, *, private_network: bool) -> str:
    app_id = f"{name}-0123456789abcdef"

    def insert(db):
        uid = 10000 + db.execute("SELECT COUNT(*) FROM apps").fetchone()[0]
        db.execute(
            "INSERT INTO apps (id, name, uid, stack, created_at, last_release, current_release,"
            " private_network) VALUES (?, ?, ?, 'host', 0, 1, 1, ?)",
            (app_id, name, uid, int(private_network)),
        )
        db.execute(
            "INSERT INTO releases (app_id, version, description, user, created_at, status,"
            " slug_sha256, slug_size, process_types, config)"
            " VALUES (?, 1, 'v1', 'admin', 0, 'succeeded', 'abc', 10, ?, '{}')",
            (app_id, json.dumps({"web": "python3 app.py"})),
        )
        db.execute(
            "INSERT INTO formation (app_id, type, quantity, size)"
            " VALUES (?, 'web', 1, 'standard-1x')",
            (app_id,),
        )

    store.write_now(insert)
    return app_id


def join_one(store: Store, fleet: Fleet) -> AgentSession:
    store.write_now(
        lambda db: db.execute("INSERT INTO nodes (id, name, created_at) VALUES ('n', 'n', 0)")
    )
    return fleet.attach("n", "n", Inventory(memory_total_mb=65536))


def sent(session: AgentSession) -> list[Assignment]:
    found = []
    while True:
        try:
            found.append(session._receive.receive_nowait().assignment)
        except trio.WouldBlock:
            return found


def specs_of(session: AgentSession) -> list[DynoSpec]:
    return list(sent(session)[-1].dynos)


def run(fn) -> None:
    trio.run(fn, clock=trio.testing.MockClock())


def test_a_dyno_takes_its_apps_setting_into_its_spec_with_the_app_id(store):
    fleet = Fleet()
    session = join_one(store, fleet)
    private = add_web_app(store, "private", private_network=True)
    add_web_app(store, "plain", private_network=False)
    reconciler = Reconciler(store, fleet, LogHub())

    async def main():
        await reconciler.reconcile_app("private")
        await reconciler.reconcile_app("plain")

    run(main)
    by_app = {spec.app: spec for spec in specs_of(session)}
    assert by_app["private"].private_network and by_app["private"].app_id == private
    assert not by_app["plain"].private_network


def test_the_flag_of_a_dyno_never_changes_but_its_apps_does(store):
    fleet = Fleet()
    join_one(store, fleet)
    app = add_web_app(store, "private", private_network=True)

    async def main():
        await Reconciler(store, fleet, LogHub()).reconcile_app("private")

    run(main)
    with pytest.raises(sqlite3.IntegrityError, match="never changes"):
        store.write_now(lambda db: db.execute("UPDATE dynos SET private_network = 0"))
    store.write_now(lambda db: db.execute("UPDATE dynos SET private_network = private_network"))
    store.write_now(
        lambda db: db.execute("UPDATE apps SET private_network = 0 WHERE id = ?", (app,))
    )


def test_restarting_after_a_toggle_makes_dynos_that_follow_the_app(store):
    fleet = Fleet()
    session = join_one(store, fleet)
    app = add_web_app(store, "private", private_network=False)
    hub = LogHub()
    reconciler = Reconciler(store, fleet, hub)
    formation = Formation(store, fleet, hub, reconciler)

    async def main():
        await reconciler.reconcile_app("private")
        (old,) = specs_of(session)
        assert not old.private_network
        store.write_now(
            lambda db: db.execute("UPDATE apps SET private_network = 1 WHERE id = ?", (app,))
        )
        await formation.restart("private", "", "admin")
        # Preboot: the old dyno runs until its replacement is up.
        specs = {spec.id: spec for spec in specs_of(session)}
        assert set(specs) - {old.id} and not specs[old.id].private_network
        (new,) = (spec for dyno_id, spec in specs.items() if dyno_id != old.id)
        assert new.private_network and new.name == "web.1"

    run(main)


def test_the_router_dials_the_address_a_dyno_reports_else_its_nodes():
    own = DynoStatus(port=20001, address="10.213.0.2:20001")
    assert dial_address(own, "192.0.2.7") == "10.213.0.2:20001"
    assert dial_address(DynoStatus(port=20001), "192.0.2.7") == "192.0.2.7:20001"
    assert dial_address(DynoStatus(port=20001), "") == "127.0.0.1:20001"
    assert dial_address(DynoStatus(), "192.0.2.7") == ""


def test_features_map_to_app_settings_and_unknown_ones_are_refused():
    assert set(FEATURES) == {"preboot", "private-network"}
    assert feature_states(App(preboot=False, private_network=True)) == {
        "preboot": False,
        "private-network": True,
    }
    request = feature_update("a", "private-network", True)
    assert request.set_private_network and request.private_network and not request.set_preboot
    request = feature_update("a", "preboot", False)
    assert request.set_preboot and not request.preboot and not request.set_private_network
    with pytest.raises(CliError, match='unknown feature "nope"; features: preboot'):
        feature_update("a", "nope", True)
