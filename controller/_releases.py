"""Releases: one slug bound to one snapshot of config. Immutable, numbered v1, v2, ... per app.

Every function here runs inside a write transaction (BEGIN IMMEDIATE), so two changes racing for
the same app get consecutive versions, never the same one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlite_utils import Database

from waka.controller._convert import timestamp
from waka.controller._errors import NotFound
from waka.controller._sizes import DEFAULT_SIZE
from waka.v1.platform_pb2 import Release

# Process types that are not part of the formation.
NOT_SCALED = frozenset({"release"})


@dataclass(frozen=True)
class SlugInfo:
    sha256: str
    size: int
    process_types: dict[str, str]
    buildpacks: list[str]
    stack: str
    health_check_path: str = ""


def current_config(db: Database, app_id: str) -> dict[str, str]:
    return {
        name: value
        for name, value in db.execute(
            "SELECT name, value FROM config_vars WHERE app_id = ? ORDER BY name", (app_id,)
        )
    }


def create_release(
    db: Database,
    app_id: str,
    *,
    description: str,
    user: str,
    now: float,
    slug: SlugInfo | None,
    config: dict[str, str] | None = None,
    status: str = "succeeded",
) -> int:
    """Stores release v(N+1) and makes it current; returns its version."""
    (version,) = db.execute(
        "UPDATE apps SET last_release = last_release + 1 WHERE id = ? RETURNING last_release",
        (app_id,),
    ).fetchone()
    snapshot = current_config(db, app_id) if config is None else config
    db.execute(
        "INSERT INTO releases (app_id, version, description, user, created_at, status,"
        " slug_sha256, slug_size, process_types, buildpacks, stack, config, health_check_path)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            app_id,
            version,
            description,
            user,
            now,
            status,
            slug.sha256 if slug else None,
            slug.size if slug else None,
            json.dumps(slug.process_types if slug else {}),
            json.dumps(slug.buildpacks if slug else []),
            slug.stack if slug else "",
            json.dumps(snapshot),
            slug.health_check_path if slug else "",
        ),
    )
    if status == "succeeded":
        db.execute("UPDATE apps SET current_release = ? WHERE id = ?", (version, app_id))
        if slug is not None:
            add_new_process_types(db, app_id, slug.process_types)
    return version


def add_new_process_types(db: Database, app_id: str, process_types: dict[str, str]) -> None:
    """A process type seen for the first time joins the formation: `web` at 1, the rest at 0."""
    for ptype in process_types:
        if ptype in NOT_SCALED:
            continue
        db.execute(
            "INSERT OR IGNORE INTO formation (app_id, type, quantity, size) VALUES (?, ?, ?, ?)",
            (app_id, ptype, 1 if ptype == "web" else 0, DEFAULT_SIZE),
        )


def current_slug(db: Database, app_id: str) -> SlugInfo | None:
    row = db.execute(
        "SELECT r.slug_sha256, r.slug_size, r.process_types, r.buildpacks, r.stack,"
        " r.health_check_path FROM apps a JOIN releases r ON r.app_id = a.id"
        " AND r.version = a.current_release WHERE a.id = ?",
        (app_id,),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return SlugInfo(row[0], row[1], json.loads(row[2]), json.loads(row[3]), row[4], row[5])


def release_message(row: dict, app_name: str, current: int) -> Release:
    return Release(
        version=row["version"],
        app=app_name,
        description=row["description"],
        user=row["user"],
        created_at=timestamp(row["created_at"]),
        slug_sha256=row["slug_sha256"] or "",
        slug_size=row["slug_size"] or 0,
        process_types=json.loads(row["process_types"]),
        config_names=sorted(json.loads(row["config"])),
        buildpacks=json.loads(row["buildpacks"]),
        current=row["version"] == current,
        status=row["status"],
        stack=row["stack"],
    )


def list_releases(
    db: Database, app_id: str, app_name: str, current: int, limit: int
) -> list[Release]:
    sql = "SELECT * FROM releases WHERE app_id = ? ORDER BY version DESC"
    params: tuple = (app_id,)
    if limit > 0:
        sql += " LIMIT ?"
        params = (app_id, limit)
    return [release_message(row, app_name, current) for row in db.query(sql, params)]


def get_release(db: Database, app_id: str, app_name: str, current: int, version: int) -> Release:
    rows = list(
        db.query("SELECT * FROM releases WHERE app_id = ? AND version = ?", (app_id, version))
    )
    if not rows:
        raise NotFound(f"Release v{version} not found for {app_name}.")
    return release_message(rows[0], app_name, current)
