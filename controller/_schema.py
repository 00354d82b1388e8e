"""The schema, as an ordered list of migrations applied at controller start.

Never edit a migration that has shipped: add a new one. Times are Unix seconds (REAL), ids are text.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

MIGRATIONS = Migrations("waka.controller")


@MIGRATIONS()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        INSERT INTO meta (key, value) VALUES ('next_uid', '10000');

        CREATE TABLE tokens (
            hash TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'join', 'node')),
            subject TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL,
            uses_left INTEGER
        );

        CREATE TABLE nodes (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            last_seen REAL,
            address TEXT NOT NULL DEFAULT '',
            inventory TEXT NOT NULL DEFAULT '{}'
        );

        CREATE TABLE apps (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            uid INTEGER NOT NULL UNIQUE,
            stack TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_release INTEGER NOT NULL DEFAULT 0,
            current_release INTEGER NOT NULL DEFAULT 0,
            buildpacks TEXT NOT NULL DEFAULT '[]'
        );

        CREATE TABLE config_vars (
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (app_id, name)
        );

        CREATE TABLE slugs (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            created_at REAL NOT NULL
        );

        CREATE TABLE builds (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            status TEXT NOT NULL,
            source_version TEXT NOT NULL,
            source_sha256 TEXT NOT NULL,
            user TEXT NOT NULL,
            node_id TEXT,
            created_at REAL NOT NULL,
            finished_at REAL,
            slug_sha256 TEXT,
            slug_size INTEGER,
            buildpacks TEXT NOT NULL DEFAULT '[]',
            process_types TEXT NOT NULL DEFAULT '{}',
            stack TEXT,
            error TEXT NOT NULL DEFAULT '',
            release_version INTEGER
        );
        CREATE INDEX builds_by_app ON builds (app_id, created_at);

        CREATE TABLE releases (
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            description TEXT NOT NULL,
            user TEXT NOT NULL,
            created_at REAL NOT NULL,
            status TEXT NOT NULL,
            slug_sha256 TEXT,
            slug_size INTEGER,
            process_types TEXT NOT NULL DEFAULT '{}',
            buildpacks TEXT NOT NULL DEFAULT '[]',
            stack TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (app_id, version)
        );

        CREATE TABLE formation (
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            quantity INTEGER NOT NULL,
            size TEXT NOT NULL,
            PRIMARY KEY (app_id, type)
        );

        CREATE TABLE dynos (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            idx INTEGER NOT NULL,
            release_version INTEGER NOT NULL,
            node_id TEXT REFERENCES nodes(id),
            desired TEXT NOT NULL CHECK (desired IN ('run', 'stop')),
            created_at REAL NOT NULL,
            seq INTEGER NOT NULL,
            size TEXT NOT NULL,
            oneoff INTEGER NOT NULL DEFAULT 0,
            command TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX dynos_by_app ON dynos (app_id, type, idx);
        CREATE INDEX dynos_by_node ON dynos (node_id);
        """
    )


@MIGRATIONS()
def m002_oneoff_dynos(db: Database) -> None:
    db.executescript(
        """
        ALTER TABLE apps ADD COLUMN last_oneoff INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE dynos ADD COLUMN env TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE dynos ADD COLUMN attach INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE dynos ADD COLUMN tty INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE dynos ADD COLUMN timeout_seconds INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE dynos ADD COLUMN tty_cols INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE dynos ADD COLUMN tty_rows INTEGER NOT NULL DEFAULT 0;
        """
    )


@MIGRATIONS()
def m003_node_admin(db: Database) -> None:
    db.executescript(
        """
        ALTER TABLE nodes ADD COLUMN cordoned INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE nodes ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
        -- Dynos whose rows went with their app: their node must still stop them, and must not
        -- mistake them for dynos a restored database does not know.
        CREATE TABLE dyno_tombstones (
            id TEXT PRIMARY KEY,
            node_id TEXT NOT NULL
        );
        """
    )


@MIGRATIONS()
def m004_routing(db: Database) -> None:
    db.executescript(
        """
        ALTER TABLE apps ADD COLUMN maintenance INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE domains (
            hostname TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            created_at REAL NOT NULL
        );
        """
    )
