"""Apps written straight into a controller store, for the unit tests that run controller parts
against a real SQLite store (test_reconcile, test_routes).

A plain module rather than a conftest.py: a second conftest module here would shadow
tests/conftest.py when unit and e2e tests run in one pytest command. Test modules import it by
name (pytest puts this directory on sys.path); it holds no tests of its own.
"""

from __future__ import annotations

import json

import sqlite_utils


def insert_app(
    db: sqlite_utils.Database, name: str, process_types: dict[str, str], config: dict[str, str]
) -> str:
    """Insert app ``name`` with a succeeded release v1 as its current release; returns its id.

    Each test adds what it needs on top (a formation, dynos) in the same write."""
    app_id = f"id-{name}"
    uid = 10000 + db.execute("SELECT COUNT(*) FROM apps").fetchone()[0]
    db.execute(
        "INSERT INTO apps (id, name, uid, stack, created_at, last_release, current_release)"
        " VALUES (?, ?, ?, 'host', 0, 1, 1)",
        (app_id, name, uid),
    )
    db.execute(
        "INSERT INTO releases (app_id, version, description, user, created_at, status,"
        " slug_sha256, slug_size, process_types, config)"
        " VALUES (?, 1, 'v1', 'admin', 0, 'succeeded', 'abc', 10, ?, ?)",
        (app_id, json.dumps(process_types), json.dumps(config)),
    )
    return app_id
