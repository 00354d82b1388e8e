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


@MIGRATIONS()
def m005_addons(db: Database) -> None:
    db.executescript(
        """
        -- External servers add-ons can live on (`waka addons:servers:add`); url holds the
        -- admin credentials and never leaves the controller.
        CREATE TABLE addon_servers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            service TEXT NOT NULL,
            url TEXT NOT NULL,
            created_at REAL NOT NULL
        );

        -- One row per add-on. Managed ones run as a service process on `node_id` (no foreign
        -- key: removing a node must not be blocked, and the add-on must then say it is lost),
        -- with its data in the node's volume named by `id`. `credentials` is JSON.
        CREATE TABLE addons (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            service TEXT NOT NULL,
            plan TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('managed', 'external')),
            owner_app_id TEXT REFERENCES apps(id) ON DELETE SET NULL,
            created_at REAL NOT NULL,
            node_id TEXT,
            port INTEGER,
            uid INTEGER,
            instance TEXT NOT NULL DEFAULT '',
            server_id TEXT REFERENCES addon_servers(id),
            host TEXT NOT NULL DEFAULT '',
            credentials TEXT NOT NULL DEFAULT '{}',
            UNIQUE (node_id, port)
        );

        -- `name` is the attachment's name: its config var is NAME_URL.
        CREATE TABLE addon_attachments (
            addon_id TEXT NOT NULL REFERENCES addons(id) ON DELETE CASCADE,
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (app_id, name)
        );
        CREATE INDEX addon_attachments_by_addon ON addon_attachments (addon_id);

        -- Config var values an attachment had before it was removed (hashed): a rollback to a
        -- release from before does not bring them back.
        CREATE TABLE addon_retired_vars (
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value_sha256 TEXT NOT NULL,
            PRIMARY KEY (app_id, name, value_sha256)
        );

        -- Volumes of destroyed add-ons still to delete on their node (it may be away).
        -- `instance` is the service process that used it: the node must have stopped it first.
        CREATE TABLE addon_volume_deletions (
            volume TEXT PRIMARY KEY,
            node_id TEXT NOT NULL,
            instance TEXT NOT NULL,
            created_at REAL NOT NULL
        );

        CREATE TABLE addon_backups (
            id TEXT PRIMARY KEY,
            addon_id TEXT NOT NULL REFERENCES addons(id) ON DELETE CASCADE,
            app_id TEXT REFERENCES apps(id) ON DELETE SET NULL,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL,
            size INTEGER NOT NULL DEFAULT 0,
            error TEXT NOT NULL DEFAULT ''
        );
        INSERT INTO meta (key, value) VALUES ('next_backup', '1');
        """
    )


@MIGRATIONS()
def m006_log_drains(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE log_drains (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            url TEXT NOT NULL,
            token TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            UNIQUE (app_id, url)
        );
        -- Per node, the highest log line sequence number stored: replays at or below it are
        -- dropped, also after a controller restart.
        CREATE TABLE log_cursors (
            node_id TEXT PRIMARY KEY,
            seq INTEGER NOT NULL
        );
        """
    )


@MIGRATIONS()
def m007_log_streams(db: Database) -> None:
    db.executescript(
        """
        -- Per dyno output stream, how far it is stored (see LogLine.stream and .offset).
        CREATE TABLE log_streams (
            stream TEXT PRIMARY KEY,
            offset INTEGER NOT NULL,
            updated_at REAL NOT NULL
        );
        """
    )


@MIGRATIONS()
def m008_preboot_and_health_checks(db: Database) -> None:
    db.executescript(
        """
        ALTER TABLE apps ADD COLUMN preboot INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE releases ADD COLUMN health_check_path TEXT NOT NULL DEFAULT '';
        """
    )


@MIGRATIONS()
def m009_dyno_indexes_for_fleet_scale(db: Database) -> None:
    db.executescript(
        """
        -- Committed memory per node (placement, `waka nodes`) is counted from this index alone,
        -- and a node's dynos to run or to stop are found in it: the count once read every dyno
        -- row on every reconcile. node_id comes first so that queries by app never pick it
        -- over dynos_by_app (with `desired` first they did, and read every dyno per app).
        CREATE INDEX dynos_by_node_desired_size ON dynos (node_id, desired, size);
        DROP INDEX dynos_by_node;
        -- The next dyno sequence number (MAX(seq)) read every dyno row on each pass that
        -- creates dynos.
        CREATE INDEX dynos_by_seq ON dynos (seq);
        """
    )


@MIGRATIONS()
def m010_immutable_specs(db: Database) -> None:
    db.executescript(
        """
        -- A dyno's spec is made once and kept while it stays assigned (_fleet_assignments.py),
        -- which is exact only while nothing a spec is made of changes once written. These make
        -- a change that would break that fail loudly: a new dyno (new id) is the way to change
        -- one, a new release the way to change what a release runs.
        CREATE TRIGGER dyno_specs_never_change BEFORE UPDATE OF id, app_id, type, idx,
            release_version, size, oneoff, command, env, attach, tty, timeout_seconds, tty_cols,
            tty_rows ON dynos
        WHEN OLD.id IS NOT NEW.id
            OR OLD.app_id IS NOT NEW.app_id
            OR OLD.type IS NOT NEW.type
            OR OLD.idx IS NOT NEW.idx
            OR OLD.release_version IS NOT NEW.release_version
            OR OLD.size IS NOT NEW.size
            OR OLD.oneoff IS NOT NEW.oneoff
            OR OLD.command IS NOT NEW.command
            OR OLD.env IS NOT NEW.env
            OR OLD.attach IS NOT NEW.attach
            OR OLD.tty IS NOT NEW.tty
            OR OLD.timeout_seconds IS NOT NEW.timeout_seconds
            OR OLD.tty_cols IS NOT NEW.tty_cols
            OR OLD.tty_rows IS NOT NEW.tty_rows
        BEGIN SELECT RAISE(ABORT, 'a dyno spec never changes: make a new dyno'); END;

        CREATE TRIGGER release_contents_never_change BEFORE UPDATE OF app_id, version, slug_sha256,
            slug_size, process_types, health_check_path, config ON releases
        WHEN OLD.app_id IS NOT NEW.app_id
            OR OLD.version IS NOT NEW.version
            OR OLD.slug_sha256 IS NOT NEW.slug_sha256
            OR OLD.slug_size IS NOT NEW.slug_size
            OR OLD.process_types IS NOT NEW.process_types
            OR OLD.health_check_path IS NOT NEW.health_check_path
            OR OLD.config IS NOT NEW.config
        BEGIN SELECT RAISE(ABORT, 'a release never changes: make a new release'); END;

        CREATE TRIGGER app_identity_never_changes BEFORE UPDATE OF id, name, uid, stack ON apps
        WHEN OLD.id IS NOT NEW.id
            OR OLD.name IS NOT NEW.name
            OR OLD.uid IS NOT NEW.uid
            OR OLD.stack IS NOT NEW.stack
        BEGIN SELECT RAISE(ABORT, 'an app keeps its name, uid and stack'); END;
        """
    )


@MIGRATIONS()
def m011_private_networks(db: Database) -> None:
    db.executescript(
        """
        -- The private-network feature: dynos in a network namespace of the app's own on each
        -- node. A dyno keeps what its app said when it was made (the flag is part of its spec,
        -- which never changes): turning the feature on or off replaces the app's dynos.
        ALTER TABLE apps ADD COLUMN private_network INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE dynos ADD COLUMN private_network INTEGER NOT NULL DEFAULT 0;

        CREATE TRIGGER dyno_private_network_never_changes BEFORE UPDATE OF private_network
            ON dynos
        WHEN OLD.private_network IS NOT NEW.private_network
        BEGIN SELECT RAISE(ABORT, 'a dyno spec never changes: make a new dyno'); END;
        """
    )


@MIGRATIONS()
def m012_apps_can_be_renamed(db: Database) -> None:
    db.executescript(
        """
        -- `waka apps:rename`: the name may change; the id (which everything refers to), the
        -- uid (which owns the app's files) and the stack may not.
        DROP TRIGGER app_identity_never_changes;
        CREATE TRIGGER app_identity_never_changes BEFORE UPDATE OF id, uid, stack ON apps
        WHEN OLD.id IS NOT NEW.id
            OR OLD.uid IS NOT NEW.uid
            OR OLD.stack IS NOT NEW.stack
        BEGIN SELECT RAISE(ABORT, 'an app keeps its id, uid and stack'); END;
        """
    )
