"""Add-on rows in a real (temporary) controller database: rollbacks, ports and the specs that the
reconciler's services hook hands to a node."""

import json

import pytest

from waka.controller._addon_postgresql import PostgresProvider
from waka.controller._addon_provider import Providers
from waka.controller._addon_records import (
    FIRST_PORT,
    allocate_port,
    find_addon,
    retire_attachment_var,
    rollback_config,
    set_attachment_var,
)
from waka.controller._addon_redis import RedisProvider
from waka.controller._addons import ADDON_TYPE, Addons
from waka.controller._apps import AppRow
from waka.controller._errors import InvalidInput, NotFound
from waka.controller._store import Store


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path / "waka.db")
    yield store
    store.close()


def add_app(db, app_id: str, uid: int) -> None:
    db.execute(
        "INSERT INTO apps (id, name, uid, stack, created_at) VALUES (?, ?, ?, 'host', 0)",
        (app_id, app_id, uid),
    )


def add_addon(db, addon_id: str, name: str, service: str, node: str, port: int, **creds) -> None:
    db.execute(
        "INSERT INTO addons (id, name, service, plan, mode, owner_app_id, created_at, node_id,"
        " port, uid, instance, host, credentials)"
        " VALUES (?, ?, ?, 'basic', 'managed', NULL, 0, ?, ?, 20001, ?, '127.0.0.1', ?)",
        (addon_id, name, service, node, port, f"inst-{addon_id}", json.dumps(creds)),
    )


def attach(db, addon_id: str, app_id: str, name: str, url: str) -> None:
    db.execute(
        "INSERT INTO addon_attachments (addon_id, app_id, name, created_at) VALUES (?, ?, ?, 0)",
        (addon_id, app_id, name),
    )
    set_attachment_var(db, app_id, f"{name}_URL", url)


def test_a_rollback_keeps_current_addon_vars_and_does_not_restore_removed_ones(store):
    def scenario(db):
        add_app(db, "app", 10000)
        add_addon(db, "pg", "postgresql-a-10000", "postgresql", "n1", 30000)
        add_addon(db, "rd", "redis-b-10000", "redis", "n1", 30001)
        attach(db, "pg", "app", "DATABASE", "postgres://new")
        attach(db, "rd", "app", "REDIS", "redis://old")
        retire_attachment_var(db, "app", "REDIS_URL")
        db.execute("DELETE FROM addon_attachments WHERE addon_id = 'rd'")
        db.execute("INSERT INTO config_vars (app_id, name, value) VALUES ('app', 'COLOR', 'blue')")
        target = {
            "COLOR": "red",
            "DATABASE_URL": "postgres://old",
            "REDIS_URL": "redis://old",
            "OTHER_URL": "redis://kept-by-the-user",
        }
        return rollback_config(db, "app", target)

    config, changed = store.write_now(scenario)
    assert config == {
        "COLOR": "red",
        "DATABASE_URL": "postgres://new",
        "OTHER_URL": "redis://kept-by-the-user",
    }
    assert changed == ["DATABASE_URL", "REDIS_URL"]


def test_a_rollback_to_before_an_attachment_still_gets_it(store):
    def scenario(db):
        add_app(db, "app", 10000)
        add_addon(db, "pg", "postgresql-a-10000", "postgresql", "n1", 30000)
        attach(db, "pg", "app", "DATABASE", "postgres://now")
        return rollback_config(db, "app", {"COLOR": "red"})

    assert store.write_now(scenario) == (
        {"COLOR": "red", "DATABASE_URL": "postgres://now"},
        ["DATABASE_URL"],
    )


def test_ports_are_unique_per_node_and_skip_ports_in_use(store):
    def scenario(db):
        add_addon(db, "a", "redis-a-10000", "redis", "n1", FIRST_PORT)
        busy = {FIRST_PORT + 1}
        on_n1 = allocate_port(db, "n1", lambda p: p not in busy)
        on_n2 = allocate_port(db, "n2", lambda p: True)
        return on_n1, on_n2

    assert store.write_now(scenario) == (FIRST_PORT + 2, FIRST_PORT)


def test_addons_are_found_by_name_or_by_an_apps_attachment_name(store):
    def scenario(db):
        add_app(db, "app", 10000)
        add_addon(db, "pg", "postgresql-a-10000", "postgresql", "n1", 30000)
        attach(db, "pg", "app", "MAIN", "postgres://x")
        return find_addon(db, "postgresql-a-10000").id, find_addon(db, "main_url", "app").id

    assert store.write_now(scenario) == ("pg", "pg")
    with pytest.raises(NotFound, match="neither an add-on nor an attachment of app"):
        store.read_now(lambda db: find_addon(db, "DATABASE", "app"))


def test_config_vars_of_attachments_obey_the_size_limit(store):
    def scenario(db):
        add_app(db, "app", 10000)
        set_attachment_var(db, "app", "BIG_URL", "x" * 40_000)

    with pytest.raises(InvalidInput, match="at most 32768 bytes"):
        store.write_now(scenario)


def test_a_node_is_assigned_its_managed_addons_as_service_processes(store):
    addons = Addons(
        store,
        hub=None,  # type: ignore[arg-type]
        reconciler=None,  # type: ignore[arg-type]
        releaser=None,  # type: ignore[arg-type]
        fleet=None,  # type: ignore[arg-type]
        providers=Providers([PostgresProvider(), RedisProvider()]),
    )

    def scenario(db):
        add_addon(db, "pg", "postgresql-a-10000", "postgresql", "n1", 30000,
                  user="u1", password="pw1", database="d1")  # fmt: skip
        add_addon(db, "rd", "redis-b-10000", "redis", "n2", 30000, password="pw2")
        return addons.services(db, "n1")

    (spec,) = store.write_now(scenario)
    assert (spec.id, spec.app, spec.type, spec.volume, spec.fixed_port, spec.uid) == (
        "inst-pg",
        "postgresql-a-10000",
        ADDON_TYPE,
        "pg",
        30000,
        20001,
    )
    assert not spec.slug.sha256
    assert spec.size.name == "standard-1x"
    assert spec.env["WAKA_ADDON_PASSWORD"] == "pw1"
    assert "pw1" not in spec.command
    # What placement counts as taken on each node: the plans' sizes (basic: standard-1x).
    assert store.read_now(addons.service_memory) == {"n1": 512, "n2": 512}


def test_the_rollback_hook_has_the_releasers_signature(store):
    def scenario(db):
        add_app(db, "app", 10000)
        app = AppRow("app", "app", 10000, "host", 0, 0)
        addons = Addons(store, None, None, None, None, Providers())  # type: ignore[arg-type]
        return addons.rollback_config(db, app, {"A": "1"})

    assert store.write_now(scenario) == ({"A": "1"}, [])
