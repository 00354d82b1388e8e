"""Add-ons in the database: rows, lookups, attachments and the config vars they own.

Every function takes the open database and runs inside the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlite_utils import Database

from waka.controller._addon_names import config_var
from waka.controller._addon_provider import AddonRecord
from waka.controller._config_vars import check_config_size
from waka.controller._errors import Conflict, NotFound
from waka.controller._releases import current_config

# Managed add-ons' ports on each node: above the agents' dyno ports (20000-29999).
FIRST_PORT = 30000
LAST_PORT = 39999


@dataclass(frozen=True)
class AddonRow:
    id: str
    name: str
    service: str
    plan: str
    mode: str
    owner: str  # the owner app's name, "" when it is gone
    created_at: float
    node_id: str
    port: int
    uid: int
    instance: str
    server_id: str
    server_name: str
    server_url: str
    host: str
    credentials: dict[str, str] = field(default_factory=dict)

    def record(self) -> AddonRecord:
        return AddonRecord(
            id=self.id,
            name=self.name,
            service=self.service,
            plan=self.plan,
            mode=self.mode,
            host=self.host,
            port=self.port,
            credentials=self.credentials,
            server_url=self.server_url,
        )


@dataclass(frozen=True)
class Attachment:
    app: str
    app_id: str
    name: str

    @property
    def config_var(self) -> str:
        return config_var(self.name)


_SELECT = (
    "SELECT a.id, a.name, a.service, a.plan, a.mode, COALESCE(o.name, ''), a.created_at,"
    " COALESCE(a.node_id, ''), COALESCE(a.port, 0), COALESCE(a.uid, 0), a.instance,"
    " COALESCE(a.server_id, ''), COALESCE(s.name, ''), COALESCE(s.url, ''), a.host,"
    " a.credentials FROM addons a LEFT JOIN apps o ON o.id = a.owner_app_id"
    " LEFT JOIN addon_servers s ON s.id = a.server_id"
)


def _row(values: tuple) -> AddonRow:
    return AddonRow(*values[:15], credentials=json.loads(values[15]))


def load_addons(db: Database, where: str = "", params: Iterable[object] = ()) -> list[AddonRow]:
    sql = f"{_SELECT} {where} ORDER BY a.name"
    return [_row(r) for r in db.execute(sql, tuple(params))]


def addon_not_found(ref: str, app: str = "") -> NotFound:
    where = f" (neither an add-on nor an attachment of {app})" if app else ""
    return NotFound(f"Couldn't find that add-on: {ref!r}{where}. `waka addons` lists them.")


def find_addon(db: Database, ref: str, app: str = "") -> AddonRow:
    """By add-on name, else (with an app) by one of the app's attachment names (DATABASE)."""
    rows = load_addons(db, "WHERE a.name = ?", (ref.strip(),))
    if not rows and app:
        rows = load_addons(
            db,
            "WHERE a.id = (SELECT t.addon_id FROM addon_attachments t JOIN apps p"
            " ON p.id = t.app_id WHERE p.name = ? AND t.name = ?)",
            (app, ref.strip().upper().removesuffix("_URL")),
        )
    if not rows:
        raise addon_not_found(ref, app)
    return rows[0]


def attachments_of(db: Database, addon_id: str) -> list[Attachment]:
    return [
        Attachment(app, app_id, name)
        for app, app_id, name in db.execute(
            "SELECT p.name, p.id, t.name FROM addon_attachments t JOIN apps p ON p.id = t.app_id"
            " WHERE t.addon_id = ? ORDER BY p.name, t.name",
            (addon_id,),
        )
    ]


def attachment_names(db: Database, app_id: str) -> set[str]:
    return {
        r[0] for r in db.execute("SELECT name FROM addon_attachments WHERE app_id = ?", (app_id,))
    }


def node_name(db: Database, node_id: str) -> str | None:
    row = db.execute("SELECT name FROM nodes WHERE id = ?", (node_id,)).fetchone()
    return row[0] if row else None


def allocate_port(db: Database, node_id: str, free: Callable[[int], bool]) -> int:
    """The lowest port of the range no add-on of the node holds and `free` accepts."""
    taken = {r[0] for r in db.execute("SELECT port FROM addons WHERE node_id = ?", (node_id,))}
    for port in range(FIRST_PORT, LAST_PORT + 1):
        if port not in taken and free(port):
            return port
    raise Conflict(f"No free add-on port left on that node ({FIRST_PORT}-{LAST_PORT}).")


def value_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def set_attachment_var(db: Database, app_id: str, name: str, value: str) -> None:
    db.execute(
        "INSERT OR REPLACE INTO config_vars (app_id, name, value) VALUES (?, ?, ?)",
        (app_id, name, value),
    )
    check_config_size(current_config(db, app_id))


def retire_attachment_var(db: Database, app_id: str, name: str) -> None:
    """Removes an attachment's config var, remembering its value so no rollback restores it."""
    row = db.execute(
        "SELECT value FROM config_vars WHERE app_id = ? AND name = ?", (app_id, name)
    ).fetchone()
    if row is None:
        return
    db.execute(
        "INSERT OR IGNORE INTO addon_retired_vars (app_id, name, value_sha256) VALUES (?, ?, ?)",
        (app_id, name, value_hash(row[0])),
    )
    db.execute("DELETE FROM config_vars WHERE app_id = ? AND name = ?", (app_id, name))


def rollback_config(
    db: Database, app_id: str, target: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The config a rollback to `target` gets: add-ons are not rolled back, so the current
    attachments' vars keep their current values, and vars of attachments removed since are not
    brought back. Returns the config and the names that differ from `target` because of it."""
    current = current_config(db, app_id)
    attached = {config_var(name) for name in attachment_names(db, app_id)}
    retired = set(
        db.execute(
            "SELECT name, value_sha256 FROM addon_retired_vars WHERE app_id = ?", (app_id,)
        ).fetchall()
    )
    config = dict(target)
    changed = []
    for name in sorted(attached):
        if name in current and config.get(name) != current[name]:
            config[name] = current[name]
            changed.append(name)
    for name, value in sorted(target.items()):
        if name not in attached and (name, value_hash(value)) in retired:
            del config[name]
            changed.append(name)
    return config, sorted(changed)
