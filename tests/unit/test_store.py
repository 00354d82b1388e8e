import sqlite3

import pytest
import trio

from waka.controller._schema import MIGRATIONS
from waka.controller._store import Store


def test_migrations_are_applied_once_and_again_is_a_no_op(tmp_path):
    path = tmp_path / "waka.db"
    store = Store.open(path)
    applied = [m.name for m in MIGRATIONS.applied(store._db)]
    store.close()
    store = Store.open(path)
    assert [m.name for m in MIGRATIONS.applied(store._db)] == applied
    assert "apps" in store._db.table_names()
    store.close()


def test_database_is_in_wal_mode_with_foreign_keys(tmp_path):
    store = Store.open(tmp_path / "waka.db")
    assert store.read_now(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    assert store.read_now(lambda db: db.execute("PRAGMA foreign_keys").fetchone()[0]) == 1
    store.close()


def test_a_failed_write_unit_leaves_nothing_behind(tmp_path):
    store = Store.open(tmp_path / "waka.db")

    def half(db):
        db.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
        raise RuntimeError("boom")

    async def main():
        with pytest.raises(RuntimeError):
            await store.write(half)
        return await store.read(
            lambda db: db.execute("SELECT COUNT(*) FROM meta WHERE key='a'").fetchone()[0]
        )

    assert trio.run(main) == 0
    store.close()


def test_concurrent_read_modify_write_units_never_lose_an_update(tmp_path):
    store = Store.open(tmp_path / "waka.db")

    def bump(db):
        (value,) = db.execute("SELECT value FROM meta WHERE key = 'next_uid'").fetchone()
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_uid'", (str(int(value) + 1),))

    async def main():
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(store.write, bump)

    trio.run(main)
    assert (
        store.read_now(
            lambda db: db.execute("SELECT value FROM meta WHERE key='next_uid'").fetchone()[0]
        )
        == "10050"
    )
    store.close()


def test_deleting_an_app_cascades_to_its_rows(tmp_path):
    store = Store.open(tmp_path / "waka.db")

    def seed(db):
        db.execute(
            "INSERT INTO apps (id, name, uid, stack, created_at)"
            " VALUES ('a', 'hello', 10000, 'host', 0)"
        )
        db.execute("INSERT INTO config_vars VALUES ('a', 'K', 'v')")
        db.execute("INSERT INTO formation VALUES ('a', 'web', 1, 'standard-1x')")
        db.execute("DELETE FROM apps WHERE id = 'a'")
        return [
            db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("config_vars", "formation")
        ]

    assert store.write_now(seed) == [0, 0]
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store._db.execute("SELECT 1")
